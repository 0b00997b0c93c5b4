"""The page's words: English and Chinese say the same things, and every error code the
server sends has a sentence in both (web/i18n.js)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import api.app  # noqa: F401  (imports every module an error may come from)
import ingest.backup  # noqa: F401  (BackupDamaged)
from ingest.pipeline import SKIP_REASONS
from rag import errors

pytestmark = pytest.mark.unit

I18N = Path(__file__).resolve().parents[2] / "web" / "i18n.js"


def _keys(language: str) -> set[str]:
    text = I18N.read_text(encoding="utf-8")
    block = re.search(rf"\n  {language}: \{{\n(.*?)\n  \}},\n", text, re.DOTALL)
    assert block is not None, f"no {language} block in {I18N}"
    return set(re.findall(r'^    "?([\w.]+)"?:', block.group(1), re.MULTILINE))


def _codes() -> set[str]:
    found = set()
    pending = [errors.LoreError]
    while pending:
        kind = pending.pop()
        found.add(kind.code)
        pending.extend(kind.__subclasses__())
    return found


def test_english_and_chinese_have_the_same_phrases() -> None:
    english, chinese = _keys("en"), _keys("zh")
    assert len(english) > 150
    assert english - chinese == set()
    assert chinese - english == set()


def test_every_error_code_and_skip_reason_reads_as_a_sentence() -> None:
    wanted = {f"code.{code}" for code in _codes() | set(SKIP_REASONS)}
    wanted |= {"code.invalid_request", "code.internal_error"}
    assert wanted - _keys("zh") == set()
    assert wanted - _keys("en") == set()

"""Documents in, cited answers out: real models, real Chroma, real uvicorn, no network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rag.answering import prompts
from tests.integration.conftest import Server
from tests.servers import REPO, lore_env

pytestmark = pytest.mark.integration

DEMO = REPO / "demo"
TIMEOUT = httpx.Timeout(300.0)


@pytest.fixture(scope="module")
def indexed(server: Server) -> dict[str, str]:
    """Upload the demo corpus once; returns file name -> doc id."""
    ids = {}
    for path in sorted(DEMO.iterdir()):
        with path.open("rb") as handle:
            response = httpx.post(
                f"{server.url}/v1/documents",
                files={"file": (path.name, handle)},
                headers=server.headers,
                timeout=TIMEOUT,
            )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "added"
        ids[path.name] = response.json()["doc_id"]
    return ids


def _ask(server: Server, question: str) -> dict:  # type: ignore[type-arg]
    response = httpx.post(
        f"{server.url}/v1/query",
        json={"question": question},
        headers=server.headers,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("question", "fact", "source"),
    [
        ("What port does the Lore server listen on by default?", "8000", "operations.md"),
        ("Lore 默认的嵌入模型是什么？", "EmbeddingGemma", "lore-zh.md"),
        ("同一个文件导入两次会怎样？", "不会", "faq-zh.txt"),
    ],
)
def test_answers_contain_the_fact_and_cite_its_source(
    server: Server, indexed: dict[str, str], question: str, fact: str, source: str
) -> None:
    answer = _ask(server, question)
    assert not answer["declined"], answer
    assert fact.lower() in answer["answer"].lower(), answer["answer"]
    cited = {c["doc_id"] for c in answer["citations"]}
    assert indexed[source] in cited, (answer["answer"], answer["citations"])
    assert prompts.cited_numbers(answer["answer"]), "the answer text carries [n] markers"


@pytest.mark.parametrize("question", ["What is the capital of Australia?", "法国的首都是哪里？"])
def test_questions_outside_the_documents_are_declined(
    server: Server, indexed: dict[str, str], question: str
) -> None:
    answer = _ask(server, question)
    assert answer["declined"], answer
    assert answer["citations"] == []
    # The refusal itself, or a withdrawn draft ending in its note (the streamed text).
    assert prompts.is_refusal(answer["answer"]), answer["answer"]


def test_streamed_answer_arrives_in_pieces(server: Server, indexed: dict[str, str]) -> None:
    kinds = []
    with httpx.stream(
        "POST",
        f"{server.url}/v1/query",
        json={"question": "How do I back up Lore?", "stream": True},
        headers=server.headers,
        timeout=TIMEOUT,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                kinds.append(line.split(":", 1)[1].strip())
    assert kinds[0] == "sources"
    assert kinds.count("token") > 3
    assert kinds[-1] == "done"


def _lore_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `lore ARGS...` as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_ingest_and_ask_json(tmp_path: Path, models_dir: Path) -> None:
    env = lore_env(tmp_path / "cli-data", models_dir)
    ingest = _lore_cli(env, "ingest", str(DEMO), "--collection", "demo")
    assert ingest.returncode == 0, ingest.stderr
    assert "4 added" in ingest.stdout
    again = _lore_cli(env, "ingest", str(DEMO), "--collection", "demo")
    assert "4 unchanged" in again.stdout
    asked = _lore_cli(env, "ask", "Lore 适合哪些单位？", "--collection", "demo", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "医院" in answer["answer"] or "银行" in answer["answer"], answer["answer"]
    assert any(c["source"].endswith("lore-zh.md") for c in answer["citations"])


def test_cli_reports_missing_model_with_fix(tmp_path: Path) -> None:
    env = lore_env(tmp_path / "data", tmp_path / "no-models")
    asked = _lore_cli(env, "search", "anything")
    assert asked.returncode == 1
    assert "lore models install embeddinggemma-300m" in asked.stderr
    assert "Traceback" not in asked.stderr


XQUAD = REPO.parent / "shared" / "eval" / "xquad"


@pytest.mark.skipif(not XQUAD.is_dir(), reason="needs ../shared/eval")
def test_cli_eval_scores_three_retrieval_modes_on_real_questions(
    tmp_path: Path, models_dir: Path
) -> None:
    # Two parallel articles (English and Chinese) and their first questions.
    docs = tmp_path / "docs"
    docs.mkdir()
    names = sorted(p.name for p in (XQUAD / "docs").iterdir())[:2]
    names += [n.replace("en-", "zh-", 1) for n in names if n.startswith("en-")]
    for name in names:
        (docs / name).write_text((XQUAD / "docs" / name).read_text(encoding="utf-8"))
    lines = (XQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    chosen = [line for line in lines if json.loads(line)["doc"] in names]
    by_lang = {lang: [c for c in chosen if f'"lang": "{lang}"' in c][:8] for lang in ("en", "zh")}
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(by_lang["en"] + by_lang["zh"]), encoding="utf-8")

    env = lore_env(tmp_path / "data", models_dir)
    run = _lore_cli(env, "eval", str(questions), "--docs", str(docs), "--mode", "all", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["collection"] == f"eval-{tmp_path.name}-docs"
    for mode in ("hybrid", "dense", "keyword"):
        assert report["retrieval"][mode]["all"]["questions"] == 16
        for lang in ("en", "zh"):
            assert report["retrieval"][mode][lang]["answer_hit@10"] >= 0.75, (mode, lang)
    assert report["retrieval"]["hybrid"]["all"]["answer_hit@5"] >= 0.85

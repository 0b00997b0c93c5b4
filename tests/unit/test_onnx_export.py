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
    _fuse_norms,
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


def rms_norm_graph() -> onnx.ModelProto:
    """Gemma's RMS norm as torch's exporter writes it: x * 1/sqrt(mean(x^2) + eps) * w."""
    consts = {
        "two": np.array(2.0, np.float32),
        "eps": np.array(1e-6, np.float32),
        "scale": np.linspace(0.5, 1.5, 8).astype(np.float32),
        "axes": np.array([-1], np.int64),
    }
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["squared"]),
        helper.make_node("ReduceMean", ["squared", "axes"], ["mean"], keepdims=1),
        helper.make_node("Add", ["mean", "eps"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["rms"]),
        helper.make_node("Reciprocal", ["rms"], ["inverse"]),
        helper.make_node("Mul", ["x", "inverse"], ["normed"]),
        helper.make_node("Mul", ["normed", "scale"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rms",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8])],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_the_rms_norm_becomes_one_node_with_the_same_output(tmp_path: Path) -> None:
    import onnxruntime

    source, target = tmp_path / "norm.onnx", tmp_path / "fused.onnx"
    onnx.save(rms_norm_graph(), str(source))
    assert _fuse_norms(source, target) == 1
    ops = [node.op_type for node in onnx.load(str(target)).graph.node]
    assert ops == ["SimplifiedLayerNormalization"]
    x = {"x": np.random.default_rng(0).normal(size=(1, 3, 8)).astype(np.float32)}
    [before] = onnxruntime.InferenceSession(str(source)).run(None, x)
    [after] = onnxruntime.InferenceSession(str(target)).run(None, x)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)

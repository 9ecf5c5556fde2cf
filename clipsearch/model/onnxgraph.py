"""The exported ViT image tower written as an ONNX graph, for onnxruntime to run.

Written once on the export side.  The graph holds no weights of its own: every weight is an
external-data reference into the export's `weights.bin` (offset and length), so the tower is
stored once.  The maths is `imageort`'s: conv patch embedding, class token, positions, pre-LN
blocks, token or mean pooling, projection; vectors leave unnormalised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization
INPUT, OUTPUT = "pixels", "vectors"


def build_graph(config: Mapping[str, Any], table: Mapping[str, Any], weights_file: str) -> bytes:
    """The serialised ONNX model of the tower that `config` describes.

    `table` maps tensor names to [offset in float32s, shape] in `weights_file`, a name relative
    to the model file, as `exportfile` lays the weights out.
    """
    graph = _Graph(table, weights_file)
    x = _tokens(graph, config)
    layers, tokens = int(config["layers"]), _grid(config) ** 2 + 1
    keep_first = config["pool"] == "tok"
    for i in range(layers):
        only_first = keep_first and i == layers - 1  # nothing reads the other tokens after it
        x = _block(graph, x, f"blocks.{i}.", config, tokens, only_first)
    x = _pool(graph, x, config, tokens, keep_first)
    graph.op("MatMul", x, graph.weight("proj"), out=OUTPUT)
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "clipsearch-image-tower",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", 3, None, None])],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", None])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="clipsearch",
    )
    model.ir_version = 8  # the oldest that opset 17 allows, for older onnxruntime releases
    return model.SerializeToString()


class _Graph:
    """Nodes and initializers under construction, with fresh names for intermediate values."""

    def __init__(self, table: Mapping[str, Any], weights_file: str) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._table = table
        self._file = weights_file
        self._count = 0

    def weight(
        self, name: str, shape: Sequence[int] | None = None, rows: tuple[int, int] | None = None
    ) -> str:
        """An initializer reading tensor `name` (rows `rows` of it, or viewed as `shape`)."""
        offset, stored = self._table[name]
        row_size = math.prod(stored[1:])
        first, last = rows or (0, stored[0])
        dims = list(shape or [last - first, *stored[1:]])
        tensor = TensorProto(name=self._fresh(name), data_type=TensorProto.FLOAT, dims=dims)
        tensor.data_location = TensorProto.EXTERNAL
        location = {
            "location": self._file,
            "offset": str(4 * (offset + first * row_size)),
            "length": str(4 * math.prod(dims)),
        }
        for key, value in location.items():
            tensor.external_data.add(key=key, value=value)
        self.initializers.append(tensor)
        return tensor.name

    def has(self, name: str) -> bool:
        return name in self._table

    def const(self, values: Sequence[float] | float, dtype: Any = np.int64) -> str:
        array = np.asarray(values, dtype=dtype)
        tensor = numpy_helper.from_array(array, self._fresh("const"))
        self.initializers.append(tensor)
        return tensor.name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attributes: Any) -> str:
        output = out or self._fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def _fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}/{self._count}"


def _grid(config: Mapping[str, Any]) -> int:
    return int(config["image_size"]) // int(config["patch_size"])


def _tokens(graph: _Graph, config: Mapping[str, Any]) -> str:
    """Patch embedding, class token and positions: (n x tokens, width) rows."""
    width, patch, grid = int(config["width"]), int(config["patch_size"]), _grid(config)
    kernel = graph.weight("patch_embedding", (width, 3, patch, patch))
    x = graph.op("Conv", INPUT, kernel, kernel_shape=[patch, patch], strides=[patch, patch])
    x = graph.op("Reshape", x, graph.const([0, width, grid * grid]))
    x = graph.op("Transpose", x, perm=[0, 2, 1])  # (n, patches, width)
    batch = graph.op("Shape", INPUT, start=0, end=1)
    cls_shape = graph.op("Concat", batch, graph.const([1, width]), axis=0)
    cls = graph.op("Expand", graph.weight("class_embedding", (1, 1, width)), cls_shape)
    x = graph.op("Add", graph.op("Concat", cls, x, axis=1), graph.weight("positional_embedding"))
    x = graph.op("Reshape", x, graph.const([-1, width]))
    if graph.has("ln_pre.weight"):
        x = _norm(graph, x, "ln_pre", config)
    return x


def _norm(graph: _Graph, x: str, name: str, config: Mapping[str, Any]) -> str:
    scale, bias = graph.weight(f"{name}.weight"), graph.weight(f"{name}.bias")
    return graph.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=config["ln_eps"])


def _linear(graph: _Graph, x: str, name: str, rows: tuple[int, int] | None = None) -> str:
    """x @ weight.T + bias on (rows, in) activations; torch's (out, in) layout stays as is."""
    weight = graph.weight(f"{name}.weight", rows=rows)
    return graph.op("Gemm", x, weight, graph.weight(f"{name}.bias", rows=rows), transB=1)


def _block(
    graph: _Graph, x: str, prefix: str, config: Mapping[str, Any], tokens: int, only_first: bool
) -> str:
    """Pre-LN residual block on (n x tokens, width) rows; with `only_first`, the class token's
    row per image is all that comes out (queries and MLP for it alone)."""
    width = int(config["width"])
    h = _norm(graph, x, f"{prefix}ln_1", config)
    if only_first:
        x, queries = _first_rows(graph, x, tokens, width), 1
        q_in = _first_rows(graph, h, tokens, width)
    else:
        queries, q_in = tokens, h
    q = _linear(graph, q_in, f"{prefix}qkv", rows=(0, width))
    k = _linear(graph, h, f"{prefix}qkv", rows=(width, 2 * width))
    v = _linear(graph, h, f"{prefix}qkv", rows=(2 * width, 3 * width))
    context = _attention(graph, q, k, v, config, queries, tokens)
    x = graph.op("Add", x, _linear(graph, context, f"{prefix}out"))
    hidden = _linear(graph, _norm(graph, x, f"{prefix}ln_2", config), f"{prefix}fc")
    hidden = _activation(graph, hidden, config["activation"])
    return graph.op("Add", x, _linear(graph, hidden, f"{prefix}proj"))


def _first_rows(graph: _Graph, x: str, tokens: int, width: int) -> str:
    per_image = graph.op("Reshape", x, graph.const([-1, tokens, width]))
    first = graph.op("Slice", per_image, graph.const([0]), graph.const([1]), graph.const([1]))
    return graph.op("Reshape", first, graph.const([-1, width]))


def _attention(
    graph: _Graph, q: str, k: str, v: str, config: Mapping[str, Any], queries: int, tokens: int
) -> str:
    """Multi-head attention of (n x queries) query rows over (n x tokens) key/value rows."""
    width, heads = int(config["width"]), int(config["heads"])
    head_dim = width // heads

    def split(rows: str, length: int, perm: list[int]) -> str:
        shaped = graph.op("Reshape", rows, graph.const([-1, length, heads, head_dim]))
        return graph.op("Transpose", shaped, perm=perm)

    q = split(q, queries, [0, 2, 1, 3])  # (n, heads, queries, dim)
    k = split(k, tokens, [0, 2, 3, 1])  # (n, heads, dim, tokens)
    v = split(v, tokens, [0, 2, 1, 3])  # (n, heads, tokens, dim)
    scores = graph.op("Mul", graph.op("MatMul", q, k), graph.const(head_dim**-0.5, np.float32))
    context = graph.op("MatMul", graph.op("Softmax", scores, axis=-1), v)
    context = graph.op("Transpose", context, perm=[0, 2, 1, 3])
    return graph.op("Reshape", context, graph.const([-1, width]))


def _activation(graph: _Graph, x: str, name: str) -> str:
    if name == "quick_gelu":
        scaled = graph.op("Mul", x, graph.const(1.702, np.float32))
        return graph.op("Mul", x, graph.op("Sigmoid", scaled))
    erf = graph.op("Erf", graph.op("Mul", x, graph.const(1 / math.sqrt(2), np.float32)))
    half_x = graph.op("Mul", x, graph.const(0.5, np.float32))
    return graph.op("Mul", half_x, graph.op("Add", erf, graph.const(1.0, np.float32)))


def _pool(graph: _Graph, x: str, config: Mapping[str, Any], tokens: int, first_only: bool) -> str:
    """(n, width): the class token's row, or the mean of the patch rows, through ln_post."""
    if first_only:
        return _norm(graph, x, "ln_post", config)  # already one row per image
    width = int(config["width"])
    per_image = graph.op("Reshape", x, graph.const([-1, tokens, width]))
    if not config["ln_post_after_pool"]:
        per_image = _norm(graph, per_image, "ln_post", config)
    patches = graph.op(
        "Slice", per_image, graph.const([1]), graph.const([tokens]), graph.const([1])
    )
    pooled = graph.op("ReduceMean", patches, axes=[1], keepdims=0)
    return _norm(graph, pooled, "ln_post", config) if config["ln_post_after_pool"] else pooled

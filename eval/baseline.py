"""The plain LangChain recipe, as the first row of the comparison.

Fixed-size chunks (RecursiveCharacterTextSplitter, 500/50) over the raw seed files, a
langchain_community FAISS store over the same embedding model as the index, and
`similarity_search`. No case-aware chunking, no BM25, no steering, no history, no abstention:
whatever the eval credits the real chain for beyond this row is what its design buys.

Each chunk is mapped back to a case through line spans, so the same case-level metrics apply.
"""

from __future__ import annotations

import bisect
import hashlib
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from eval.metrics import DEPTH, Response
from rag.config import Config
from rag.corpus import Case, clean, load_manifest, read_lines

CHUNK_SIZE, CHUNK_OVERLAP = 500, 50
# Chunks fetched per question: enough that ten distinct cases survive deduplication.
FETCH = 40
CITED_CHUNKS = 3


def case_at(cases: Iterable[Case]):
    """(source, line) → the case whose span (or printed duplicate's span) holds that line."""
    spans = {}
    for c in cases:
        for lo, hi in (c.lines, *c.duplicates):
            spans.setdefault(c.source, []).append((lo, hi, c))

    def find(source: str, line: int) -> Case | None:
        return next((c for lo, hi, c in spans.get(source, ()) if lo <= line <= hi), None)

    return find


def split_seeds(cfg: Config, cases: Iterable[Case]):
    """LangChain Documents over the seed files, bookmark artefacts stripped, each chunk's
    metadata naming its source, its line (that of its middle character) and its case, if any."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP,
                                              add_start_index=True)
    find = case_at(cases)
    docs = []
    for doc in load_manifest(cfg.seeds)["documents"]:
        lines = [clean(line) for line in read_lines(cfg.seeds / doc["file"])]
        # Cleaned lines joined one per line, so offset → line is a search over line starts.
        starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]]).tolist()
        for chunk in splitter.create_documents(["\n".join(lines)], [{"source": doc["file"]}]):
            middle = chunk.metadata["start_index"] + len(chunk.page_content) // 2
            line = bisect.bisect_right(starts, middle)
            case = find(doc["file"], line)
            chunk.metadata |= {"line": line, "case_id": case.id if case else None,
                               "district": case.district if case else None}
            docs.append(chunk)
    return docs


class LangChainBaseline:
    name = "langchain"

    def __init__(self, cfg: Config, embedder, cases: dict[str, Case], progress: bool = True):
        from langchain_community.vectorstores import FAISS

        self.cases = cases
        docs = split_seeds(cfg, cases.values())
        texts = [d.page_content for d in docs]
        vectors = self._vectors(cfg, embedder, texts, progress)
        self.store = FAISS.from_embeddings(zip(texts, vectors.tolist()), embedder.as_langchain(),
                                           metadatas=[d.metadata for d in docs])

    @staticmethod
    def _vectors(cfg: Config, embedder, texts: list[str], progress: bool) -> np.ndarray:
        """The chunks' passage vectors, kept under RAG_HOME: embedding ~600 chunks takes
        minutes on a laptop CPU, and they only change with the seeds or the model."""
        key = hashlib.sha256("\0".join([embedder.model_id, *texts]).encode()).hexdigest()[:16]
        path = Path(cfg.home) / "eval" / "baseline" / f"{key}.npy"
        if path.exists():
            return np.load(path, allow_pickle=False)
        if progress:
            print(f"langchain 基线：正在嵌入 {len(texts)} 个片段…", file=sys.stderr)
        vectors = np.asarray(embedder.as_langchain().embed_documents(texts), dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors, allow_pickle=False)
        return vectors

    def respond(self, item: dict) -> Response:
        # The plain recipe has no notion of a conversation: a follow-up is searched as typed.
        t = time.perf_counter()
        docs = self.store.similarity_search(item["question"], k=FETCH)
        latency = (time.perf_counter() - t) * 1000
        ranked = list(dict.fromkeys(d.metadata["case_id"] for d in docs if d.metadata["case_id"]))
        cited = list(dict.fromkeys(d.metadata["case_id"] for d in docs[:CITED_CHUNKS] if d.metadata["case_id"]))
        districts = list(dict.fromkeys(self.cases[c].district for c in cited if self.cases[c].district))
        return Response(answer=docs[0].page_content if docs else "", answerable=True, districts=districts,
                        cited_case_ids=cited, ranked_case_ids=ranked[:DEPTH], latency_ms=latency)

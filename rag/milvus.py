"""The index's chunks and sentences in Milvus: milvus-lite embedded (RAG_MILVUS_URI a file path) or
a server (http://host:19530, RAG_MILVUS_TOKEN). RAG_STORE=milvus turns it on.

The local index stays the record of cases and chunks (what the answer layer reads and cites);
Milvus holds their searchable copy: text with a BM25 Function over a jieba analyzer that knows the
corpus's own words, and the dense vectors under HNSW. `Store.sync` brings it in step with an index,
document by document; `Store.search` answers one question with the same score arrays the local
FAISS and bm25s give, so fusion, grouping, steering and the answers above are the same code.

Lite differs from a server in ways this module respects: it returns BM25 scores negated (so only
their size is used, and fusion is by rank), its text_match ignores Chinese (unused), and a query
before flush() re-scans every row.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rag.chunking import Chunk
from rag.config import Config
from rag.corpus import Case
from rag.index import Index, jieba_cache, sentence_rows
from rag.tokenize import STOPWORDS, private_dir

# bm25s's defaults (method "lucene"), so both backends weigh terms alike. Milvus multiplies every
# term by (k1 + 1), which bm25s leaves out: scores are divided by it to stay on bm25s's scale.
BM25_K1, BM25_B = 1.5, 0.75
HNSW = {"M": 32, "efConstruction": 200}
PUNCTUATION = list("，。、；：？！“”‘’（）《》【】—…·,.;:?!\"'()[]<>-/")
BATCH = 10_000  # rows per write; a server takes up to 64 MB a request (~20k rows of 384 floats)
MAX_TOPK = 16_384  # Milvus's limit on one search's results
ANALYZER = "rag.analyzer"  # a collection property: the digest of the analyzer it was made with


def document_id(case: Case) -> str:
    """The unit that is added, replaced and removed as a whole: the document `rag ingest` keeps."""
    return case.document or case.collection


def analyzer(words: list[str]) -> dict:
    """jieba with the same user dictionary as the local BM25, so 一网通办 stays one token. The
    stop list is the local tokenizer's, plus punctuation (which the local one drops as non-words)."""
    return {"tokenizer": {"type": "jieba", "dict": ["_default_", *words], "mode": "search"},
            "filter": ["lowercase", {"type": "stop", "stop_words": sorted(STOPWORDS) + PUNCTUATION}]}


def literal(value: str | int) -> str:
    """A value as a Milvus expression literal: a string quoted with \\ and " escaped (a district or
    document name is data, never expression syntax)."""
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def where(districts=(), years=(), documents=()) -> str:
    """A filter on the inverted-indexed fields; empty means everything."""
    parts = [f"{name} in [{', '.join(literal(v) for v in values)}]"
             for name, values in (("district", districts), ("year", years), ("doc_id", documents)) if values]
    return " and ".join(parts)


def _key(*parts) -> str:
    """Deterministic primary key: the same content gets the same key on every machine."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:32]


def chunk_key(chunk: Chunk) -> str:
    return _key(chunk.case.id, chunk.section, [[s.text, s.line] for s in chunk.sentences])


def sentence_key(chunk: Chunk, pos: int) -> str:
    s = chunk.sentences[pos]
    return _key(chunk.case.id, s.line, pos, chunk_key(chunk), s.text)


def collection_names(model_id: str) -> tuple[str, str]:
    """One pair of collections per embedding model: vectors of two models never meet."""
    slug = re.sub(r"[^0-9a-zA-Z_]", "_", model_id)[:120]
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return f"rag_{slug}_{digest}_chunks", f"rag_{slug}_{digest}_sentences"


def analyzer_digest(words: list[str]) -> str:
    return hashlib.sha256(json.dumps(analyzer(words), ensure_ascii=False).encode()).hexdigest()[:16]


def connect(cfg: Config):
    import jieba
    from pymilvus import MilvusClient

    # Lite's analyzer uses jieba's global tokenizer, which would cache its dictionary in $TMPDIR,
    # where anyone could plant one; it goes where the local tokenizer's does.
    jieba.dt.tmp_dir = private_dir(jieba_cache(cfg))

    uri = cfg.milvus_target
    if uri.startswith(("http://", "https://", "tcp://", "grpc://")):
        return MilvusClient(uri=uri, token=cfg.milvus_token)
    return MilvusClient(uri)  # a file: milvus-lite, embedded in this process


@dataclass(frozen=True)
class Sync:
    """What one sync changed, by document id."""

    added: tuple[str, ...]
    replaced: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]


class Store:
    """One index's chunks and sentences in Milvus, and searches over them."""

    def __init__(self, cfg: Config, index: Index, client=None):
        self.cfg = cfg
        self.index = index
        self.client = client or connect(cfg)
        self.model = index.manifest["model"]
        self.chunk_name, self.sentence_name = collection_names(self.model)
        self.rows = sentence_rows(index.chunks)
        self.chunk_row = {chunk_key(c): i for i, c in enumerate(index.chunks)}
        self.sentence_row = {sentence_key(index.chunks[c], p): i for i, (c, p) in enumerate(self.rows)}
        self._ensure_collections()

    # -- schema -------------------------------------------------------------------------------
    def _schema(self, dim: int):
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512, is_partition_key=True)
        schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("case_id", DataType.VARCHAR, max_length=128)
        schema.add_field("district", DataType.VARCHAR, max_length=64)  # "" where the text names none
        schema.add_field("year", DataType.INT64)
        schema.add_field("heading", DataType.VARCHAR, max_length=2048)
        schema.add_field("location", DataType.JSON)
        schema.add_field("model", DataType.VARCHAR, max_length=256)
        schema.add_field("text", DataType.VARCHAR, max_length=16_384, enable_analyzer=True,
                         analyzer_params=analyzer(self.index.tokenizer.words))
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                     input_field_names=["text"], output_field_names=["sparse"]))
        return schema

    def _index_params(self):
        params = self.client.prepare_index_params()
        params.add_index("dense", index_type="HNSW", metric_type="COSINE", params=HNSW)
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                         params={"bm25_k1": BM25_K1, "bm25_b": BM25_B})
        for name in ("doc_id", "district", "year"):
            params.add_index(name, index_type="INVERTED")
        return params

    def _ensure_collections(self) -> None:
        """Milvus fixes a collection's analyzer when it is created: when the corpus dictionary has
        changed (a document brought new quoted names), the collections are made again and the next
        sync writes every document, so both backends cut text alike."""
        digest = analyzer_digest(self.index.tokenizer.words)
        for name in (self.chunk_name, self.sentence_name):
            if self.client.has_collection(name) and \
                    self.client.describe_collection(name).get("properties", {}).get(ANALYZER) != digest:
                self.client.drop_collection(name)
            if not self.client.has_collection(name):
                self.client.create_collection(name, schema=self._schema(self.index.manifest["dim"]),
                                              index_params=self._index_params(), properties={ANALYZER: digest})
            self.client.load_collection(name)

    # -- documents ----------------------------------------------------------------------------
    def documents(self) -> dict[str, str]:
        """The index's documents: id → a hash of the keys of their chunks and sentences (keys are
        content hashes, so any change of text, place, heading or chunking changes it)."""
        keys: dict[str, list[str]] = {}
        for key, i in self.chunk_row.items():
            keys.setdefault(document_id(self.index.chunks[i].case), []).append(key)
        for key, i in self.sentence_row.items():
            keys.setdefault(document_id(self.index.chunks[self.rows[i][0]].case), []).append(key)
        return {doc: hashlib.sha256("".join(sorted(k)).encode()).hexdigest()[:32] for doc, k in keys.items()}

    def held(self, doc: str) -> str | None:
        """The hash Milvus holds for a document, or None."""
        rows = self.client.query(self.chunk_name, filter=f"doc_id == {literal(doc)}",
                                 output_fields=["doc_hash"], limit=1)
        return rows[0]["doc_hash"] if rows else None

    def count(self, doc: str | None = None) -> int:
        """Rows held (chunks and sentences), of one document or of all."""
        f = f"doc_id == {literal(doc)}" if doc is not None else ""
        return sum(self.client.query(name, filter=f, output_fields=["count(*)"])[0]["count(*)"]
                   for name in (self.chunk_name, self.sentence_name))

    def strays(self, keep: list[str]) -> list[str]:
        """Documents Milvus holds that are not in `keep`, found one query at a time (no full scan)."""
        found = []
        while True:
            f = f"doc_id not in [{', '.join(literal(d) for d in keep + found)}]"
            rows = self.client.query(self.chunk_name, filter=f, output_fields=["doc_id"], limit=1)
            if not rows:
                rows = self.client.query(self.sentence_name, filter=f, output_fields=["doc_id"], limit=1)
            if not rows:
                return found
            found.append(rows[0]["doc_id"])

    def sync(self, progress=lambda msg: None) -> Sync:
        """Make Milvus hold exactly this index's documents: the changed and new ones are deleted and
        written again, the ones gone are deleted, then all is flushed (unflushed rows are re-scanned
        by every query). Keys are deterministic and rows are upserted, so two processes syncing the
        same index at once write the same rows, not duplicates."""
        docs = self.documents()
        added, replaced, unchanged = [], [], []
        for doc, digest in sorted(docs.items()):
            held = self.held(doc)
            (unchanged if held == digest else added if held is None else replaced).append(doc)
        removed = self.strays(sorted(docs))
        for doc in removed:
            progress(f"Milvus：删除 {doc}")
        if added or replaced:
            progress(f"Milvus：写入 {len(added) + len(replaced)} 个文档")
        self.replace(added + replaced + removed)
        return Sync(tuple(added), tuple(replaced), tuple(removed), tuple(unchanged))

    def replace(self, docs: list[str]) -> None:
        """Delete the documents' rows, then write what the index holds of them (nothing for a
        document it no longer has), and flush: one step for callers. The rows go in together, not
        document by document: lite keeps BM25 statistics per segment, one segment per write."""
        if not docs:
            return
        for doc in docs:
            self.remove(doc, flush=False)
        wanted, digests = set(docs), self.documents()
        vectors, svectors = self.vectors
        chunks = [self._row(key, digests, vectors[i], self.index.chunks[i].index_text, self.index.chunks[i],
                            {"lines": list(self.index.chunks[i].lines)})
                  for key, i in self.chunk_row.items() if document_id(self.index.chunks[i].case) in wanted]
        sentences = []
        for key, i in self.sentence_row.items():
            chunk = self.index.chunks[self.rows[i][0]]
            if document_id(chunk.case) in wanted:
                s = chunk.sentences[self.rows[i][1]]
                sentences.append(self._row(key, digests, svectors[i], s.text, chunk,
                                           {"line": s.line, "chunk": chunk_key(chunk)}))
        for name, rows in ((self.chunk_name, chunks), (self.sentence_name, sentences)):
            for start in range(0, len(rows), BATCH):
                self.client.upsert(name, rows[start:start + BATCH])
        self.flush()

    @cached_property
    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The index's chunk and sentence vectors, read back from FAISS: nothing is embedded twice."""
        v, s = self.index.vectors, self.index.sentence_vectors
        return v.reconstruct_n(0, v.ntotal), s.reconstruct_n(0, s.ntotal)

    def _row(self, key, digests, vector, text, chunk: Chunk, place: dict) -> dict:
        case = chunk.case
        return {"id": key, "doc_id": document_id(case), "doc_hash": digests[document_id(case)], "case_id": case.id,
                "district": case.district or "", "year": case.year, "heading": " > ".join(chunk.section),
                "location": {"source": case.source, **place}, "model": self.model, "text": text,
                "dense": np.asarray(vector, dtype=np.float32).tolist()}

    def remove(self, doc: str, flush: bool = True) -> None:
        for name in (self.chunk_name, self.sentence_name):
            self.client.delete(name, filter=f"doc_id == {literal(doc)}")
        if flush:
            self.flush()

    def flush(self) -> None:
        for name in (self.chunk_name, self.sentence_name):
            self.client.flush(name)

    # -- search -------------------------------------------------------------------------------
    def search(self, text: str | None, q: np.ndarray | None, depth: int, expr: str = ""):
        """BM25 and dense scores of the best `depth` chunks and sentences, as arrays over the
        index's rows like the local search gives: BM25 0 and cosine -1 where Milvus returned
        nothing (neither gets a vote in the fusion). None for a side not asked for."""
        n_c, n_s = len(self.index.chunks), len(self.rows)
        out = []
        for name, keys, n in ((self.chunk_name, self.chunk_row, n_c), (self.sentence_name, self.sentence_row, n_s)):
            limit = min(depth, n, MAX_TOPK)
            bm25 = dense = None
            if text is not None:
                bm25 = np.zeros(n, dtype=np.float32)
                for row, score in self._hits(name, "sparse", text, limit, expr, {"metric_type": "BM25"}, keys):
                    # Lite gives -score, a server +score: only the size, on bm25s's scale.
                    bm25[row] = abs(score) / (BM25_K1 + 1)
            if q is not None:
                dense = np.full(n, -1.0, dtype=np.float32)
                params = {"metric_type": "COSINE", "params": {"ef": max(limit, 64)}}
                for row, score in self._hits(name, "dense", q[0].tolist(), limit, expr, params, keys):
                    dense[row] = score
            out += [bm25, dense]
        return tuple(out)  # chunk bm25, chunk dense, sentence bm25, sentence dense

    def _hits(self, name, field, data, limit, expr, params, keys):
        res = self.client.search(name, data=[data], anns_field=field, limit=limit, filter=expr,
                                 search_params=params, output_fields=[])
        # A row this index does not have (another build of a document, written by another
        # process since this one loaded) is skipped: it could not be cited from here.
        return [(keys[h["id"]], h["distance"]) for h in res[0] if h["id"] in keys]


def open_store(cfg: Config, index: Index, progress: bool = True) -> Store | None:
    """The Store for `index`, synced, where RAG_STORE=milvus; None where the search stays on the
    local index. A missing extra or an unreachable server is a ConfigError."""
    import sys

    from rag.config import ConfigError

    if cfg.store != "milvus":
        return None
    try:
        import pymilvus  # noqa: F401
    except ImportError:
        raise ConfigError("RAG_STORE=milvus 需要 Milvus 客户端：pip install -e '.[milvus]'") from None
    try:
        store = Store(cfg, index)
    except Exception as e:  # pymilvus raises MilvusException, lite OSError/RuntimeError
        reason = " ".join(str(e).split())[:200]
        raise ConfigError(f"RAG_MILVUS_URI={cfg.milvus_target}：无法连接 Milvus（{type(e).__name__}: {reason}）") from None
    done = store.sync((lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None))
    if progress and (done.added or done.replaced or done.removed):
        print(f"Milvus：+{len(done.added)} 文档，更新 {len(done.replaced)}，删除 {len(done.removed)}，"
              f"未变 {len(done.unchanged)}（{cfg.milvus_target}）", file=sys.stderr)
    return store

"""Chunks → an index on disk: FAISS vectors, a BM25 index, the records as JSON, and a manifest.

Everything lives in one directory (config.index_dir). A build writes a sibling temp directory
and renames it into place, so a failed or killed build leaves the previous index as it was.
Nothing here is loaded with pickle: FAISS's own format, JSON, and bm25s's .npy/.json files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.chunking import Chunk, chunk_cases
from rag.config import FAISS_SETTINGS, Config
from rag.corpus import Case, case_text, clean, load_cases, read_lines
from rag.tokenize import Tokenizer, user_words

SCHEMA = 3  # 2: the manifest holds a SHA-256 of every file; 3: sentence-level vectors and BM25
FILES = ("manifest.json", "chunks.json", "vectors.faiss", "userdict.txt", "bm25",
         "sentences.faiss", "bm25-sentences")


class IndexError_(RuntimeError):
    """An index that cannot be used; the message says what to do."""


class IndexMissing(IndexError_):
    pass


class IndexStale(IndexError_):
    def __init__(self, reasons: str):
        super().__init__(f"索引已过期：{reasons}。请运行 rag index --rebuild")
        self.reasons = reasons


class IndexCorrupt(IndexError_):
    pass


def corpus_hash(cfg: Config) -> str:
    h = hashlib.sha256()
    for path in sorted(cfg.seeds.glob("*.txt")) + [cfg.seeds / "manifest.json"]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def chunking_hash(cfg: Config) -> str:
    """Settings and the parsing code itself: an index built by other chunking code is stale."""
    h = hashlib.sha256(f"size={cfg.chunk_size}".encode())
    for module in ("documents.py", "corpus.py", "chunking.py", "tokenize.py"):
        h.update((Path(__file__).parent / module).read_bytes())
    return h.hexdigest()[:16]


# Index types for RAG_FAISS; "auto" chooses by size, at the crossovers bench/results/scale.md
# measured. Flat is exact and searches in under 2 ms up to 30k chunks (6 ms at 100k). HNSW is then
# faster at recall@10 >= 0.95 against exact, where IVF reached only 0.90 at 100k; from 300k IVF
# is both faster and within target (0.95 at 300k, 0.99 at 1M), builds 3-8x faster, and HNSW
# (M=32, efConstruction 40) fell to 0.88 at 1M. 200k splits the measured 100k-300k bracket.
FLAT_MAX_CHUNKS, HNSW_MAX_CHUNKS = 30_000, 200_000
HNSW_M, HNSW_EF_SEARCH = 32, 256
IVF_NPROBE = 64


def faiss_index_type(n: int, setting: str) -> str:
    if setting not in FAISS_SETTINGS:
        raise ValueError(f"RAG_FAISS must be one of {', '.join(FAISS_SETTINGS)}, not {setting!r}")
    if setting != "auto":
        return setting
    return "flat" if n <= FLAT_MAX_CHUNKS else "hnsw" if n <= HNSW_MAX_CHUNKS else "ivf"


def ivf_lists(n: int) -> int:
    return max(16, int(4 * n**0.5))


def new_faiss_index(kind: str, vectors: np.ndarray):
    """An index of `kind` holding `vectors`; search settings are saved with it."""
    import faiss

    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, ivf_lists(len(vectors)), faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = IVF_NPROBE
    index.add(vectors)
    return index


@dataclass
class Index:
    dir: Path
    manifest: dict
    cases: dict[str, Case]
    chunks: list[Chunk]
    vectors: "object"  # faiss.Index
    bm25: "object"  # bm25s.BM25
    tokenizer: Tokenizer
    # Sentence-level evidence beside the chunks: row i is sentence `sentences[i]` = (chunk id,
    # position in the chunk), with its own vectors and BM25 index.
    sentence_vectors: "object" = None
    sentence_bm25: "object" = None


def sentence_rows(chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Every sentence of every chunk, in order; derived from chunks.json, so never stored twice."""
    return [(c.id, i) for c in chunks for i in range(len(c.sentences))]


def jieba_cache(cfg: Config) -> Path:
    return cfg.home / "cache"


def load_embedder(cfg: Config):
    import embeddings

    return embeddings.load(cfg.model, cache_dir=cfg.home / "models", engine=cfg.query_engine,
                           passage_engine=cfg.build_engine)


class EmbeddingCache:
    """Passage vectors by (model id, SHA-256 of the text), in one .npz under RAG_HOME/cache: after
    an ingest the rebuild embeds only text it has not seen. Engines that share a model id give
    interchangeable vectors (README, "The embedding model"), so they share the cache. The file is
    replaced whole, so a killed build leaves the previous one; a damaged one is started afresh."""

    def __init__(self, home: Path, model_id: str):
        self.path = home / "cache" / "embeddings" / f"{hashlib.sha256(model_id.encode()).hexdigest()[:16]}.npz"
        self.embedded = 0

    def load(self) -> tuple[dict[bytes, int], np.ndarray | None]:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            if len(keys) == len(vectors):
                return {k: i for i, k in enumerate(keys.tolist())}, vectors
        except (OSError, ValueError, KeyError):
            pass
        return {}, None

    def embed(self, embedder, lists: list[list[str]], progress: bool, timings: dict) -> list[np.ndarray]:
        known, vectors = self.load()
        keys = [[hashlib.sha256(t.encode("utf-8")).hexdigest()[:32].encode() for t in texts] for texts in lists]
        new = {k: t for ks, texts in zip(keys, lists) for k, t in zip(ks, texts) if k not in known}
        if new:
            timings |= {f"engine_{k}": v for k, v in embedder.start_passages().items()}
            fresh = np.asarray(embedder.embed_passages(list(new.values()), progress=progress), dtype=np.float32)
            vectors = fresh if vectors is None else np.concatenate([vectors, fresh])
            known |= {k: len(known) + i for i, k in enumerate(new)}
            self.save(known, vectors)
            self.embedded = len(new)
        return [vectors[[known[k] for k in ks]] for ks in keys]

    def save(self, known: dict[bytes, int], vectors: np.ndarray) -> None:
        for d in (self.path.parent.parent, self.path.parent):  # RAG_HOME/cache is private (rag.tokenize)
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}.npz")
        np.savez(tmp, keys=np.array(list(known), dtype="S32"), vectors=vectors)
        os.replace(tmp, self.path)


def build(cfg: Config, embedder=None, progress: bool = True) -> Index:
    import bm25s
    import faiss

    say = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    started = time.perf_counter()
    timings = {}

    t = time.perf_counter()
    cases = load_cases(cfg.seeds)
    chunks = chunk_cases(cases, cfg.seeds, cfg.chunk_size)
    timings["parse_chunk_s"] = time.perf_counter() - t
    say(f"索引：{len(cases)} 个案例，{len(chunks)} 个片段")

    embedder = embedder or load_embedder(cfg)
    t = time.perf_counter()
    rows = sentence_rows(chunks)
    sentence_texts = [chunks[c].sentences[i].text for c, i in rows]
    cache = EmbeddingCache(cfg.home, embedder.model_id)
    vecs, svecs = cache.embed(embedder, [[c.index_text for c in chunks], sentence_texts], progress, timings)
    timings["embed_s"] = time.perf_counter() - t
    timings["embedded"] = cache.embedded
    say(f"向量：新嵌入 {cache.embedded} 条，缓存命中 {len(chunks) + len(rows) - cache.embedded} 条")

    t = time.perf_counter()
    kind = faiss_index_type(len(chunks), cfg.faiss)
    vectors = new_faiss_index(kind, np.ascontiguousarray(vecs, dtype=np.float32))
    tokenizer = Tokenizer(user_words([case_text(c, cfg.seeds) for c in cases]), jieba_cache(cfg))
    bm25 = bm25s.BM25()
    bm25.index([tokenizer(c.index_text) for c in chunks], show_progress=False)
    svectors = new_faiss_index(faiss_index_type(len(rows), cfg.faiss), np.ascontiguousarray(svecs, dtype=np.float32))
    sbm25 = bm25s.BM25()
    sbm25.index([tokenizer(t) for t in sentence_texts], show_progress=False)
    timings["index_s"] = time.perf_counter() - t

    manifest = {
        "schema": SCHEMA,
        "model": embedder.model_id,
        "model_setting": cfg.model,
        "build_engine": embedder.passage_engine,
        "dim": int(vecs.shape[1]),
        "corpus_hash": corpus_hash(cfg),
        "chunking_hash": chunking_hash(cfg),
        "chunk_size": cfg.chunk_size,
        "faiss": kind,
        "cases": len(cases),
        "chunks": len(chunks),
        "sentences": len(rows),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "timings": timings,
    }
    final = cfg.index_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        faiss.write_index(vectors, str(tmp / "vectors.faiss"))
        bm25.save(str(tmp / "bm25"), show_progress=False)
        faiss.write_index(svectors, str(tmp / "sentences.faiss"))
        sbm25.save(str(tmp / "bm25-sentences"), show_progress=False)
        tokenizer.save(tmp / "userdict.txt")
        records = {"cases": [c.to_dict() for c in cases], "chunks": [c.to_dict() for c in chunks]}
        (tmp / "chunks.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        # The manifest goes last, with a hash of every file: a directory without one was never finished.
        manifest["files"] = file_hashes(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"索引已写入 {final}（{time.perf_counter() - started:.1f} 秒）")
    return Index(final, manifest, {c.id: c for c in cases}, chunks, vectors, bm25, tokenizer, svectors, sbm25)


def _swap_in(tmp: Path, final: Path) -> None:
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def check(cfg: Config, model_id: str | None = None) -> dict:
    """The manifest, if the index on disk fits this corpus, chunking and model; raises otherwise."""
    path = cfg.index_dir / "manifest.json"
    if not path.exists():
        raise IndexMissing(f"还没有索引（{cfg.index_dir}）。请运行 rag index")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["schema"], manifest["model"], manifest["corpus_hash"]
    except (ValueError, KeyError, TypeError) as e:
        raise IndexCorrupt(f"索引清单损坏（{path}：{e}）。请运行 rag index --rebuild") from e
    reasons = []
    if manifest["schema"] != SCHEMA:
        reasons.append(f"索引格式版本 {manifest['schema']} ≠ {SCHEMA}")
    if manifest.get("model_setting") != cfg.model or (model_id and manifest["model"] != model_id):
        reasons.append(f"索引是用另一个模型建的（{manifest['model']}，当前设置为 {model_id or cfg.model}）")
    if manifest["corpus_hash"] != corpus_hash(cfg):
        reasons.append("seeds/ 中的文档已变更")
    if manifest.get("chunking_hash") != chunking_hash(cfg):
        reasons.append("切分设置或代码已变更")
    if reasons:
        raise IndexStale("；".join(reasons))
    return manifest


def file_hashes(d: Path) -> dict[str, str]:
    """SHA-256 of every file of an index but its manifest, by path within the directory."""
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def verify_files(d: Path, manifest: dict) -> None:
    """Every file exactly as the build wrote it: the parsers alone let an edited district, a
    zeroed vector or an emptied dictionary through, and served them as the source."""
    want, got = manifest.get("files"), file_hashes(d)
    if not isinstance(want, dict):
        raise IndexCorrupt(f"索引清单缺少文件校验值（{d}）。请运行 rag index --rebuild")
    changed = sorted(name for name in want.keys() | got.keys() if want.get(name) != got.get(name))
    if changed:
        raise IndexCorrupt(f"索引文件被改动或缺失（{d}：{'、'.join(changed[:5])}）。请运行 rag index --rebuild")


def verify_sources(seeds: Path, cases: dict[str, Case], chunks: list[Chunk]) -> None:
    """Every source a file inside the document store, every case record (district, title, lines)
    as the seeds give it today, and every quoted sentence there, at its line: what the chat states
    as fact or shows as a quotation is read back from the source (~11 ms), not taken on trust."""
    root = seeds.resolve()
    for case in cases.values():
        path = (seeds / case.source).resolve()
        if path.parent != root or not path.is_file():
            raise IndexCorrupt(f"索引中的出处不在文档库中（{case.source!r}）。请运行 rag index --rebuild")
    fresh = {c.id: c for c in load_cases(seeds)}
    changed = sorted(set(fresh) ^ set(cases) | {k for k in fresh.keys() & cases.keys() if fresh[k] != cases[k]})
    if changed:
        raise IndexCorrupt(f"索引中的案例信息与原文不符（{'、'.join(changed[:5])}）。请运行 rag index --rebuild")
    for chunk in chunks:
        lines = read_lines(seeds / chunk.case.source)
        for s in chunk.sentences:
            if not (0 < s.line <= len(lines) and s.text and s.text in clean(lines[s.line - 1])):
                raise IndexCorrupt(f"索引中的引文与原文不符（{chunk.case.source} 第 {s.line} 行）。请运行 rag index --rebuild")


def recover(cfg: Config, say=lambda msg: print(msg, file=sys.stderr)) -> None:
    """Directories a killed build left beside the index: a finished one takes the place of a
    missing index (a kill between _swap_in's two renames), the rest are removed. Those of a
    build still running are left alone."""
    final = cfg.index_dir
    leftovers = []
    for d in sorted(final.parent.glob(f".{final.name}.*-*")):
        kind, _, pid = d.name.rpartition("-")
        if kind.endswith((".tmp", ".old")) and pid.isdigit() and not _running(int(pid)):
            leftovers.append(d)
    # The newer build first: a finished temp directory, then the index it was replacing.
    for d in sorted(leftovers, key=lambda d: not d.name.split(".")[-1].startswith("tmp")):
        if not final.exists() and _finished(d):
            with suppress(OSError):  # another process recovering the same directory got there first
                d.rename(final)
                say(f"已恢复上次中断时的索引（{d.name}）")
        else:
            shutil.rmtree(d, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        pass
    return True


def _finished(d: Path) -> bool:
    try:
        verify_files(d, json.loads((d / "manifest.json").read_text(encoding="utf-8")))
        return True
    except (OSError, ValueError, IndexCorrupt):
        return False


def load(cfg: Config, model_id: str | None = None) -> Index:
    import bm25s
    import faiss

    recover(cfg)
    manifest = check(cfg, model_id)
    d = cfg.index_dir
    verify_files(d, manifest)
    try:
        records = json.loads((d / "chunks.json").read_text(encoding="utf-8"))
        cases = {c["id"]: Case.from_dict(c) for c in records["cases"]}
        chunks = [Chunk.from_dict(c, cases) for c in records["chunks"]]
        vectors = faiss.read_index(str(d / "vectors.faiss"))
        bm25 = bm25s.BM25.load(str(d / "bm25"), allow_pickle=False)
        tokenizer = Tokenizer.load(d / "userdict.txt", jieba_cache(cfg))
        svectors = faiss.read_index(str(d / "sentences.faiss"))
        sbm25 = bm25s.BM25.load(str(d / "bm25-sentences"), allow_pickle=False)
    except Exception as e:  # faiss raises RuntimeError, json ValueError, numpy ValueError/OSError
        raise IndexCorrupt(f"索引文件损坏或不完整（{d}：{type(e).__name__}: {str(e)[:200]}）。"
                           "请运行 rag index --rebuild") from e
    n_sentences = len(sentence_rows(chunks))
    if not (vectors.ntotal == len(chunks) == manifest["chunks"] and vectors.d == manifest["dim"]
            and svectors.ntotal == n_sentences == manifest.get("sentences") and svectors.d == manifest["dim"]):
        raise IndexCorrupt(f"索引文件互不一致（向量 {vectors.ntotal}，片段 {len(chunks)}，"
                           f"句向量 {svectors.ntotal}，句子 {n_sentences}）。请运行 rag index --rebuild")
    verify_sources(cfg.seeds, cases, chunks)
    return Index(d, manifest, cases, chunks, vectors, bm25, tokenizer, svectors, sbm25)


def ensure(cfg: Config, embedder=None, progress: bool = True) -> Index:
    """Load the index, building it when it is missing or stale. A corrupt one is an error."""
    model_id = embedder.model_id if embedder else None
    try:
        return load(cfg, model_id)
    except (IndexMissing, IndexStale) as e:
        if progress:  # what happens now, not the command that would do it
            why = f"索引已过期（{e.reasons}）" if isinstance(e, IndexStale) else f"还没有索引（{cfg.index_dir}）"
            print(f"{why}，正在重建索引，请稍候（进度如下）…", file=sys.stderr)
        return build(cfg, embedder, progress)

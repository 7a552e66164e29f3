"""Local (FAISS + bm25s) against milvus-lite, in one run: ingest time, the search step's p50/p95 and
memory, at the corpus and at synthetic sizes.

    python bench/milvus.py [--sizes 0,20000,100000] [--queries 40]

Size 0 is the real corpus (its chunks and sentences). A synthetic size N copies the real chunks
until there are N, each copy a case of its own ("2021-10#3") so its keys differ, with its
real vectors perturbed (Gaussian noise, renormalised) instead of embedding N texts again; each
synthetic chunk carries one sentence, its first, so both levels hold N rows. The queries are the
first dev gold questions, embedded once. Every (backend, size) runs in a fresh process, so
`peak_rss_mb` is that process's peak: the index records, the built index and, for lite, Milvus
embedded in it; `added_rss_mb` is what the process holds at the end beyond what it held once
the corpus index was loaded (the synthetic index and, for lite, Milvus). The search step is Retriever.scores (BM25 and dense over chunks and sentences,
fused), what one question costs below the answer layer; lite's candidate depth is RAG_MILVUS_DEPTH.

Writes bench/results/milvus.json and milvus.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag import index as idx  # noqa: E402
from rag.config import Config  # noqa: E402


def synthetic(index, n: int, seed: int = 0):
    """`index` grown to n chunks: copies of its chunks as cases of their own, vectors perturbed."""
    import bm25s

    from rag.index import new_faiss_index, faiss_index_type

    rng = np.random.default_rng(seed)
    base = index.vectors.reconstruct_n(0, index.vectors.ntotal)
    cases, chunks, vecs = {}, [], []
    for i in range(n):
        src = index.chunks[i % len(index.chunks)]
        copy = i // len(index.chunks)
        case = replace(src.case, id=f"{src.case.id}#{copy}", collection=f"{src.case.collection}#{copy}")
        cases[case.id] = case
        chunks.append(replace(src, id=i, case=case, sentences=src.sentences[:1]))
        v = base[src.id] + rng.normal(0, 0.02, base.shape[1]).astype(np.float32)
        vecs.append(v / np.linalg.norm(v))
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    kind = faiss_index_type(n, "auto")
    bm25, sbm25 = bm25s.BM25(), bm25s.BM25()
    bm25.index([index.tokenizer(c.index_text) for c in chunks], show_progress=False)
    sbm25.index([index.tokenizer(c.sentences[0].text) for c in chunks], show_progress=False)
    manifest = dict(index.manifest, chunks=n, sentences=n, faiss=kind)
    return idx.Index(index.dir, manifest, cases, chunks, new_faiss_index(kind, vecs), bm25, index.tokenizer,
                     new_faiss_index(kind, vecs), sbm25)


def rss_mb() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(backend: str, size: int, queries: Path, db: str) -> dict:
    """One measurement, in this process."""
    from rag.retrieve import CANDIDATES, FULL_RANK_MAX, Retriever

    cfg = Config.from_env()
    index = idx.load(cfg)
    loaded = rss_mb()  # the records, jieba and the libraries: the same for both backends
    qs = json.loads(queries.with_suffix(".json").read_text(encoding="utf-8"))
    qv = np.load(queries)
    t = time.perf_counter()
    if size:
        index = synthetic(index, size)
    result = {"backend": backend, "size": size or "corpus", "chunks": len(index.chunks),
              "sentences": index.manifest["sentences"]}
    store = None
    if backend == "milvus-lite":
        from rag.milvus import Store

        cfg = replace(cfg, store="milvus", milvus_uri=db)
        t = time.perf_counter()  # the local structures above are lite's input, not its cost
        store = Store(cfg, index)
        store.sync()
    # Neither side embeds here. Local at the corpus: the FAISS and BM25 part of its build (the
    # manifest's index_s); at a synthetic size, building those structures above.
    result["ingest_s"] = round(index.manifest["timings"]["index_s"] if backend == "local" and not size
                               else time.perf_counter() - t, 2)

    class Vectors:  # the embedded questions, looked up: the bench times search, not the model
        def embed_queries(self, texts):
            return qv[[qs.index(x) for x in texts]]

    r = Retriever(index, Vectors(), cfg, store=store)
    r.scores(qs[0])  # first query: caches, lite's first search
    lat = []
    for text in qs[1:]:
        t = time.perf_counter()
        r._compute(text)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    result |= {"search_p50_ms": round(lat[len(lat) // 2], 1), "search_p95_ms": round(lat[int(len(lat) * 0.95)], 1),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "added_rss_mb": round(rss_mb() - loaded),
               "queries": len(lat),
               "depth": cfg.milvus_depth if store else "all" if len(index.chunks) <= FULL_RANK_MAX else CANDIDATES}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,20000,100000")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # backend size queries.npy db
    args = parser.parse_args()
    if args.one:
        backend, size, queries, db = args.one
        print(json.dumps(one(backend, int(size), Path(queries), db)))
        return 0

    from eval.runner import load_gold

    cfg = Config.from_env()
    idx.ensure(cfg)
    work = Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    qs = [g["question"] for g in load_gold(split="dev")][:args.queries + 1]
    np.save(work / "queries.npy", idx.load_embedder(cfg).embed_queries(qs).astype(np.float32))
    (work / "queries.json").write_text(json.dumps(qs, ensure_ascii=False), encoding="utf-8")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for backend in ("local", "milvus-lite"):
            print(f"{backend} at {size or 'corpus'} …", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--one", backend, str(size), str(work / "queries.npy"),
                                  str(work / f"lite-{size}.db")], capture_output=True, text=True, env=os.environ)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    meta = {"cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 1), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "milvus.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2), encoding="utf-8")
    lines = [f"# Local against milvus-lite ({meta['cpus']} cores, load {meta['load']}, {meta['at']})", "",
             "`python bench/milvus.py`: one process per row; search = Retriever.scores for one question.", "",
             "| backend | size | chunks | sentences | ingest s | search p50 ms | p95 ms | peak RSS MB | added RSS MB | depth |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['size']} | {r['chunks']} | {r['sentences']} | {r['ingest_s']} | "
              f"{r['search_p50_ms']} | {r['search_p95_ms']} | {r['peak_rss_mb']} | {r['added_rss_mb']} | {r['depth']} |" for r in rows]
    (args.out / "milvus.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

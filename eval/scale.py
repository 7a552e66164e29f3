"""`rag bench --scale`: search at 10k, 100k and 1M chunks, on a synthetic corpus.

    python -m eval.scale [--sizes 10000,100000,1000000] [--out bench/results]

The synthetic corpus is not the product's data and never touches an index directory: it lives in
memory and only the figures are written (scale.json, scale.md). Each chunk recombines a few real
seed sentences taken from one neighbourhood of the source text, as a real chunk does, so BM25
sees real Chinese vocabulary and real term statistics. Vectors come from a cheap deterministic
source of the model's dimension (embedding a million chunks on 2 cores is not the point): every
sentence gets a fixed random unit vector, and a chunk's vector is the mean of its sentences'
plus noise. Chunks that share sentences are near each other, as real neighbouring passages are.

Measured per size: FAISS exact (flat) against HNSW and IVF (latency, memory, recall@10 against
exact), bm25s latency, and the hybrid path the chain would need at that size (both top-100
candidate lists, fused). One query at a time, as the chain searches.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.bench import percentiles
from rag.config import REPO_SEEDS
from rag.index import HNSW_M, ivf_lists

DIM = 384  # multilingual-e5-small
# 30k and 300k place the crossover between the sizes the issue asks for.
SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000)
QUERIES = 200
K = 10
CANDIDATES = 100  # per retriever, before fusion
HNSW_EF_CONSTRUCTION = 40  # faiss's default, as rag.index builds it
# The search-time knobs tried, smallest first; the report keeps the first one reaching the target.
HNSW_EF_SEARCHES = (32, 64, 128, 256)
IVF_NPROBES = (8, 16, 32, 64, 128)
RECALL_TARGET = 0.95


@dataclass
class Synthetic:
    sentences: list[str]
    offsets: np.ndarray  # chunk i is sentences[members[offsets[i]:offsets[i+1]]]
    members: np.ndarray
    vectors: np.ndarray  # (n, DIM) float32, unit rows
    query_vectors: np.ndarray
    query_sentences: np.ndarray  # the sentence each query paraphrases, for its BM25 tokens

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def text(self, i: int) -> str:
        return "".join(self.sentences[j] for j in self.members[self.offsets[i] : self.offsets[i + 1]])


def seed_sentences(seeds: Path = REPO_SEEDS) -> list[str]:
    """Every sentence of the seed files, in document order (repeats kept: they are real)."""
    text = "\n".join(p.read_text("utf-8") for p in sorted(seeds.glob("*.txt")))
    return [s.strip() for s in re.split(r"(?<=[。；！？])|\n", text) if len(s.strip()) >= 6]


def generate(n: int, seed: int = 0, queries: int = QUERIES, sentences: list[str] | None = None) -> Synthetic:
    """n chunks of 3-6 sentences drawn from a window of 12 consecutive seed sentences."""
    sentences = sentences or seed_sentences()
    rng = np.random.default_rng(seed)
    s = len(sentences)
    sizes = rng.integers(3, 7, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    starts = np.repeat(rng.integers(0, s, n), sizes)
    members = ((starts + rng.integers(0, 12, offsets[-1])) % s).astype(np.int32)

    basis = _unit(rng.standard_normal((s, DIM), dtype=np.float32))
    vectors = np.add.reduceat(basis[members], offsets[:-1], axis=0) / sizes[:, None]
    vectors += 0.05 * rng.standard_normal(vectors.shape, dtype=np.float32)
    # A query is close to one sentence, plus more noise than a chunk: it is phrased differently.
    query_sentences = rng.integers(0, s, queries)
    query_vectors = basis[query_sentences] + 0.08 * rng.standard_normal((queries, DIM), dtype=np.float32)
    return Synthetic(sentences, offsets, members, _unit(vectors), _unit(query_vectors), query_sentences)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def bm25_index(data: Synthetic):
    """bm25s over the chunks. Each distinct sentence is tokenised once with the product's
    tokenizer and a chunk's tokens are its sentences' tokens: jieba over a million chunks would
    take longer than everything else here, and sentence ends are cut points anyway."""
    import bm25s
    from bm25s.tokenization import Tokenized

    tokenizer = _tokenizer()
    vocab: dict[str, int] = {}
    sentence_ids = [[vocab.setdefault(t, len(vocab)) for t in tokenizer(s)] for s in data.sentences]
    ids = [sum((sentence_ids[j] for j in data.members[a:b]), []) for a, b in zip(data.offsets[:-1], data.offsets[1:])]
    model = bm25s.BM25()
    model.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
    return model, tokenizer


def _tokenizer():
    from rag.corpus import case_text, load_cases
    from rag.tokenize import Tokenizer, user_words

    return Tokenizer(user_words([case_text(c, REPO_SEEDS) for c in load_cases(REPO_SEEDS)]))


def _timed(fn, items) -> tuple[list, dict]:
    out, ms = [], []
    with _one_thread():
        for item in items:
            t = time.perf_counter()
            out.append(fn(item))
            ms.append((time.perf_counter() - t) * 1000)
    return out, percentiles(ms, digits=2)  # sub-millisecond searches need the second digit


@contextmanager
def _one_thread():
    """Search as the chain does, one query at a time on one FAISS thread: FAISS only splits a
    batch of queries across threads, and idle OpenMP threads spin, stealing the other core."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(e)) / len(e) for f, e in zip(found, exact)]))


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_size(n: int, seed: int = 0, queries: int = QUERIES, say=lambda msg: None) -> dict:
    """All the measurements at one size; every index is dropped before the next is built."""
    import faiss

    t = time.perf_counter()
    data = generate(n, seed, queries)
    result = {"chunks": n, "generate_s": round(time.perf_counter() - t, 2)}
    q = data.query_vectors
    one_at_a_time = [q[i : i + 1] for i in range(len(q))]

    flat = faiss.IndexFlatIP(DIM)
    t = time.perf_counter()
    flat.add(data.vectors)
    build_s = time.perf_counter() - t
    _, exact = flat.search(q, K)  # batched: the reference, not a latency
    found, lat = _timed(lambda x: flat.search(x, K)[1][0], one_at_a_time)
    result["flat"] = {"build_s": round(build_s, 2), "search_ms": lat, "recall_at_10": _recall(np.array(found), exact),
                      "index_mb": round(flat.ntotal * DIM * 4 / 2**20, 1)}
    flat.reset()  # frees its memory before the next index is built
    say(f"  flat: {lat['p50']} ms p50")

    result["hnsw"] = _approximate(
        lambda: faiss.IndexHNSWFlat(DIM, HNSW_M, faiss.METRIC_INNER_PRODUCT), data, exact, one_at_a_time,
        "ef_search", HNSW_EF_SEARCHES, lambda index, ef: setattr(index.hnsw, "efSearch", ef), say)
    nlist = ivf_lists(n)
    result["ivf"] = _approximate(
        lambda: faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist, faiss.METRIC_INNER_PRODUCT),
        data, exact, one_at_a_time, "nprobe", IVF_NPROBES, lambda index, p: setattr(index, "nprobe", p), say)
    result["ivf"]["nlist"] = nlist

    t = time.perf_counter()
    bm25, tokenizer = bm25_index(data)
    result["bm25"] = {"build_s": round(time.perf_counter() - t, 2)}
    query_tokens = [[t for t in tokenizer(data.sentences[i]) if t in bm25.vocab_dict] for i in data.query_sentences]
    _, result["bm25"]["search_ms"] = _timed(lambda tokens: _bm25_top(bm25, tokens), query_tokens)
    say(f"  bm25: {result['bm25']['search_ms']['p50']} ms p50")
    result["peak_rss_mb"] = _rss_mb()
    return result


def _approximate(make, data: Synthetic, exact, queries, knob: str, values, set_knob, say) -> dict:
    index = make()
    t = time.perf_counter()
    if not index.is_trained:
        sample = data.vectors[np.random.default_rng(1).choice(len(data), min(len(data), 100_000), replace=False)]
        index.train(sample)
    index.add(data.vectors)
    out = {"build_s": round(time.perf_counter() - t, 2), "index_mb": round(_index_bytes(index) / 2**20, 1),
           "by_" + knob: {}}
    for value in values:
        set_knob(index, value)
        found, lat = _timed(lambda x: index.search(x, K)[1][0], queries)
        row = {"search_ms": lat, "recall_at_10": round(_recall(np.array(found), exact), 4)}
        out["by_" + knob][str(value)] = row
        if row["recall_at_10"] >= RECALL_TARGET and knob not in out:
            out |= {knob: value, **row}
    if knob not in out:  # no setting reached the target: report the most accurate one
        out |= {knob: values[-1], **out["by_" + knob][str(values[-1])]}
    say(f"  {type(index).__name__}: {out['search_ms']['p50']} ms p50, recall@10 {out['recall_at_10']} "
        f"at {knob}={out[knob]}, built in {out['build_s']} s")
    return out


def _index_bytes(index) -> int:
    import faiss

    return faiss.serialize_index(index).nbytes


def _bm25_top(bm25, tokens: list[str]) -> np.ndarray:
    if not tokens:
        return np.empty(0, dtype=np.int64)
    scores = bm25.get_scores(tokens)
    top = np.argpartition(-scores, CANDIDATES)[:CANDIDATES]
    return top[np.argsort(-scores[top])]


def crossover(results: list[dict]) -> dict:
    """The smallest measured size at which flat search misses 50 ms at p50, or its p95 the 80 ms
    that an answer may take in all; below it exact search is both fast enough and exact."""
    slow = [r["chunks"] for r in results if r["flat"]["search_ms"]["p50"] > 50 or r["flat"]["search_ms"]["p95"] > 80]
    return {"flat_too_slow_at": min(slow) if slow else None}


def main(sizes=SIZES, out: str | Path = "bench/results", seed: int = 0, progress: bool = True) -> dict:
    import faiss

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))  # builds use every core
    results = []
    load_before = os.getloadavg()
    for n in sizes:
        say(f"scale: {n} chunks")
        results.append(run_size(n, seed, say=say))
    report = {"machine": _machine(load_before), "dim": DIM, "queries": QUERIES, "k": K, "seed": seed,
              "hnsw": {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}, "recall_target": RECALL_TARGET,
              "sizes": results, "crossover": crossover(results)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "scale.md").write_text(markdown(report), encoding="utf-8")
    return report


def _machine(load_before) -> dict:
    return {"cpus": len(os.sched_getaffinity(0)), "python": sys.version.split()[0],
            "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Scale: synthetic corpus, one query at a time",
        "",
        f"{m['cpus']} CPUs, load average {m['loadavg_1min_before_after'][0]} → "
        f"{m['loadavg_1min_before_after'][1]}; {report['queries']} queries; recall@{report['k']} against exact "
        f"search; HNSW M={report['hnsw']['M']}, efConstruction={report['hnsw']['ef_construction']}; "
        f"each approximate index at the cheapest setting reaching recall {report['recall_target']}.",
        "",
        "| chunks | flat p50 / p95 ms | HNSW p50 / p95 ms | HNSW recall (efSearch) | IVF p50 / p95 ms "
        "| IVF recall (nprobe/nlist) | bm25s p50 / p95 ms | flat / HNSW / IVF MB | HNSW / IVF build s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["sizes"]:
        f, h, i, b = r["flat"], r["hnsw"], r["ivf"], r["bm25"]
        lines.append(
            f"| {r['chunks']:,} | {_p50_p95(f)} | {_p50_p95(h)} | {h['recall_at_10']:.3f} ({h['ef_search']}) "
            f"| {_p50_p95(i)} | {i['recall_at_10']:.3f} ({i['nprobe']}/{i['nlist']}) | {_p50_p95(b)} "
            f"| {f['index_mb']} / {h['index_mb']} / {i['index_mb']} | {h['build_s']} / {i['build_s']} "
            f"| {r['peak_rss_mb']} |")
    c = report["crossover"]["flat_too_slow_at"]
    where = f"{c:,} chunks" if c else "no measured size"
    lines += ["", f"Flat search first misses 50 ms p50 (or 80 ms p95) at: {where}. Choice by size: bench/SCALING.md."]
    return "\n".join(lines) + "\n"


def _p50_p95(row: dict) -> str:
    return f"{row['search_ms']['p50']} / {row['search_ms']['p95']}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    report = main([int(s) for s in args.sizes.split(",")], args.out)
    sys.stdout.write(markdown(report))

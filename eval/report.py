"""An eval result → metrics.json, report.md and chart.png in one folder, and a terminal table."""

from __future__ import annotations

import json
from pathlib import Path

from eval.metrics import SUMMARY, TYPE_ORDER, VARIANT_ORDER, failures

HEADERS = {"hit_rate@1": "hit@1", "hit_rate@5": "hit@5", "mrr": "MRR", "ndcg@5": "nDCG@5",
           "district_accuracy": "district acc", "list_f1": "list F1", "keyword_recall": "kw recall",
           "citation_precision": "cite prec", "abstention_rate": "abstain (unans.)",
           "false_abstention_rate": "false abstain", "latency_p50_ms": "p50 ms", "latency_p95_ms": "p95 ms",
           "cite@1": "cite@1", "near_miss_abstention": "abstain (near miss)",
           "premise_corrected": "premise fixed", "dialogue_accuracy": "dialogue",
           "deep_keyword_recall": "kw recall (deep)", "paraphrase_consistency": "consistency"}
TYPE_LABELS = {"which_district": "哪个区", "list_districts": "哪些区", "what_measure": "做法",
               "fact_number": "数字/事实", "comparison": "对比", "follow_up": "追问", "wrong_premise": "错误前提",
               "unanswerable": "无法回答"}
# The variant table's columns: what a register changes.
VARIANT_COLUMNS = ("n", "hit_rate@1", "cite@1", "district_accuracy", "keyword_recall", "false_abstention_rate",
                   "abstention_rate", "paraphrase_consistency")
# Families matplotlib may find on a desktop or with fonts-noto-cjk / fonts-wqy installed.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC")


def fmt(name: str, value) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if name.endswith("_ms") else f"{value:.2f}"


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown(result), encoding="utf-8")
    chart(result, out / "chart.png")


# -- Markdown ----------------------------------------------------------------------------------
def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def markdown(result: dict) -> str:
    meta, modes = result["meta"], result["modes"]
    lines = [f"# Eval: {meta['split']} split, {meta['questions']} questions", "",
             f"Model `{meta['model']}`, index built {meta['index_built_at']}, top_k {meta['top_k']}, "
             f"fusion {meta['fusion']}, LLM {meta['llm'] or 'none (extractive)'}; run {meta['started_at']} "
             f"({meta['seconds']} s).", "",
             "Retrieval metrics are case-level over the top 10 cases the answerer searched; unanswerable "
             "questions count only in the abstention columns.", ""]
    lines += _table(["mode", "n", *(HEADERS[m] for m in SUMMARY)],
                    [[mode, str(s["overall"]["n"]), *(fmt(m, s["overall"][m]) for m in SUMMARY)]
                     for mode, s in modes.items()])
    types = [t for t in TYPE_ORDER if any(t in s["by_type"] for s in modes.values())]
    lines += ["", "## Per question type"]
    for t in types:
        cells = {mode: s["by_type"].get(t) for mode, s in modes.items()}
        # Only the columns that mean something for this type.
        cols = [m for m in SUMMARY if any(c and c[m] is not None for c in cells.values())]
        n = next(c["n"] for c in cells.values() if c)
        lines += ["", f"### {t} ({TYPE_LABELS.get(t, t)}, n={n})", ""]
        lines += _table(["mode", *(HEADERS[m] for m in cols)],
                        [[mode, *(fmt(m, c[m]) for m in cols)] for mode, c in cells.items() if c])
    main = meta["main_mode"]
    lines += ["", f"## Per variant ({main})", ""]
    lines += variant_rows(modes[main], _table)
    gap = modes[main].get("gap_dev_minus_test")
    if gap:
        lines += ["", f"## Generalisation gap ({main}): dev minus test", ""]
        lines += _table(list(gap), [[f"{v:+.3f}" for v in gap.values()]])
    failed = [(r, failures(r)) for r in result["questions"][main]]
    failed = [(r, why) for r, why in failed if why]
    lines += ["", f"## Failed questions ({main}): {len(failed)} of {meta['questions']}", ""]
    lines += _table(["id", "type", "question", "why", "districts", "top cases", "gold cases"],
                    [[r["id"], r["type"], r["question"], "; ".join(why), "、".join(r["districts"]) or "—",
                      ", ".join(r["ranked_case_ids"][:3]) or "—", ", ".join(r["gold_case_ids"]) or "—"]
                     for r, why in failed])
    return "\n".join(lines) + "\n"


def variant_rows(summary: dict, table) -> list:
    by = summary.get("by_variant") or {}
    cols = [c for c in VARIANT_COLUMNS if c == "n" or any(by[v].get(c) is not None for v in by)]
    return table(["variant", *(HEADERS.get(c, c) for c in cols)],
                 [[v, *(str(by[v]["n"]) if c == "n" else fmt(c, by[v][c]) for c in cols)]
                  for v in VARIANT_ORDER if v in by])


# -- chart -------------------------------------------------------------------------------------
def _cjk_font() -> str | None:
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in have), None)


def chart(result: dict, path: Path) -> None:
    """Grouped bars per question type, one bar per mode: hit_rate@1 and keyword_recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = result["modes"]
    types = [t for t in TYPE_ORDER if t != "unanswerable" and any(t in s["by_type"] for s in modes.values())]
    font = _cjk_font()
    # Without a CJK font the Chinese labels would be empty boxes: use the type ids then.
    labels = [TYPE_LABELS[t] if font else t for t in types]
    x, width = np.arange(len(types)), 0.8 / max(len(modes), 1)
    rc = {"font.family": [font, "DejaVu Sans"]} if font else {}
    with plt.rc_context(rc):
        fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.4 * len(types) + 3), 8), sharex=True)
        for ax, metric in zip(axes, ("hit_rate@1", "keyword_recall")):
            for i, (mode, s) in enumerate(modes.items()):
                values = [(s["by_type"].get(t) or {}).get(metric) or 0 for t in types]
                ax.bar(x + (i - (len(modes) - 1) / 2) * width, values, width, label=mode)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel(metric)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"{result['meta']['split']} split, {result['meta']['questions']} questions")
        # Above the panels: inside one, it would cover the bars that reach 1.0.
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.96),
                   ncol=len(modes), fontsize="small", frameon=False)
        axes[1].set_xticks(x, labels, rotation=20 if not font else 0)
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        fig.savefig(path, dpi=120)
        plt.close(fig)


# -- terminal ----------------------------------------------------------------------------------
def print_table(result: dict, console, by: str = "") -> None:
    """The summary metrics for the terminal: one column per mode, so five modes fit in 80 columns;
    `by="variant"` adds the main mode's table per register."""
    from rich.table import Table

    meta, modes = result["meta"], result["modes"]
    if by == "variant":
        def rich_table(header, rows):
            t = Table(title=f"eval · {meta['split']} · {meta['main_mode']} · by variant")
            for i, h in enumerate(header):
                t.add_column(h, justify="left" if i == 0 else "right")
            for row in rows:
                t.add_row(*row)
            return [t]
        console.print(*variant_rows(modes[meta["main_mode"]], rich_table))
    table = Table(title=f"eval · {meta['split']} · {meta['questions']} 题")
    table.add_column("metric")
    for mode in modes:
        table.add_column(mode, justify="right")
    for m in SUMMARY:
        table.add_row(HEADERS[m], *(fmt(m, s["overall"][m]) for s in modes.values()))
    console.print(table)

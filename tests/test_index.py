"""The index on disk: built once per session from the real seeds with the real model, then damaged
in copies to check that it never silently lies."""

import json
import shutil
from pathlib import Path

import pytest

from rag import index as idx
from rag.config import Config


def test_manifest_records_model_corpus_and_chunking(index, cfg):
    m = index.manifest
    assert m["schema"] == idx.SCHEMA
    assert m["model"] == index_model_id(cfg)
    assert m["dim"] == 384 and m["chunks"] == len(index.chunks) == index.vectors.ntotal
    assert m["corpus_hash"] == idx.corpus_hash(cfg) and m["chunking_hash"] == idx.chunking_hash(cfg)
    assert m["built_at"]


def index_model_id(cfg):
    return idx.load_embedder(cfg).model_id


def test_only_faiss_json_and_bm25s_files(index):
    for path in Path(index.dir).rglob("*"):
        if path.is_file():
            assert path.suffix in {".faiss", ".json", ".npy", ".txt"}, path
            if path.suffix == ".npy":  # bm25s arrays: plain numeric, never object (pickled) arrays
                import numpy as np

                assert np.load(path, allow_pickle=False).dtype != object


def test_user_dictionary_keeps_programme_names_whole(index):
    tokens = index.tokenizer("虹口区的一楼一事办和徐汇的住所云、汇商码")
    for word in ("一楼一事办", "住所云", "汇商码", "虹口区"):
        assert word in tokens


@pytest.fixture
def copy_cfg(index, cfg, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(index.dir, home / "index")
    return Config(seeds=cfg.seeds, home=home, model=cfg.model, chunk_size=cfg.chunk_size)


def test_a_copy_loads(copy_cfg, index):
    assert len(idx.load(copy_cfg).chunks) == len(index.chunks)


@pytest.mark.parametrize("name", ["vectors.faiss", "chunks.json", "manifest.json", "bm25/vocab.index.json"])
def test_truncated_files_are_reported_with_the_fix(copy_cfg, name):
    path = copy_cfg.index_dir / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    with pytest.raises(idx.IndexCorrupt, match="rag index --rebuild"):
        idx.load(copy_cfg)


def test_missing_index_is_reported_then_built(copy_cfg):
    shutil.rmtree(copy_cfg.index_dir)
    with pytest.raises(idx.IndexMissing):
        idx.load(copy_cfg)


def test_other_model_is_stale(copy_cfg):
    m = json.loads((copy_cfg.index_dir / "manifest.json").read_text())
    m["model"], m["model_setting"] = "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"
    (copy_cfg.index_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(idx.IndexStale, match="另一个模型"):
        idx.load(copy_cfg)


def test_other_chunking_is_stale(copy_cfg):
    with pytest.raises(idx.IndexStale, match="切分"):
        idx.load(Config(seeds=copy_cfg.seeds, home=copy_cfg.home, chunk_size=copy_cfg.chunk_size + 50))


def test_changed_seeds_are_stale(copy_cfg, tmp_path):
    seeds = tmp_path / "seeds"
    shutil.copytree(copy_cfg.seeds, seeds)
    with open(seeds / "004_be8ed99756085642.txt", "a", encoding="utf-8") as f:
        f.write("\n新增一行。\n")
    with pytest.raises(idx.IndexStale, match="seeds"):
        idx.load(Config(seeds=seeds, home=copy_cfg.home, chunk_size=copy_cfg.chunk_size))


def test_failed_build_leaves_previous_index_intact(copy_cfg, index, monkeypatch):
    before = (copy_cfg.index_dir / "manifest.json").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("killed halfway")

    import faiss

    monkeypatch.setattr(faiss, "write_index", boom)
    embedder = idx.load_embedder(copy_cfg)
    with pytest.raises(RuntimeError, match="killed halfway"):
        idx.build(copy_cfg, embedder, progress=False)
    assert (copy_cfg.index_dir / "manifest.json").read_bytes() == before
    assert len(idx.load(copy_cfg).chunks) == len(index.chunks)
    assert not [p for p in copy_cfg.home.iterdir() if p.name.startswith(".index.tmp")]

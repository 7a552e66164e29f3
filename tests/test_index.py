"""The index on disk: built once per session from the real seeds with the real model, then damaged
in copies to check that it never silently lies."""

import json
import os
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
    # The search cut also yields seams of two words ("亿元楼有多少" → 楼有): no word of the dictionary.
    assert all(index.tokenizer.is_word(w) for w in ("好评率", "解封", "电话", "一楼一事办"))
    assert not any(index.tokenizer.is_word(w) for w in ("楼有", "这是", "有个"))


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


# -- integrity: a damaged index is refused, whatever part of it was changed -----------------------
def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def first_case(records: dict) -> dict:
    return next(c for c in records["cases"] if c["district"] == "虹口区")


def zero_vectors(path: Path) -> None:
    import faiss
    import numpy as np

    old = faiss.read_index(str(path))
    zeroed = faiss.IndexFlatIP(old.d)
    zeroed.add(np.zeros((old.ntotal, old.d), dtype=np.float32))
    faiss.write_index(zeroed, str(path))


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 64, len(data)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


TAMPERING = {
    # Each of these was served silently (wrong district as fact, edited text as a quotation,
    # changed answers) or failed deep inside a library.
    "district changed": ("chunks.json", lambda p: edit_json(p, lambda r: first_case(r).update(district="徐汇区"))),
    "sentence edited": ("chunks.json", lambda p: edit_json(
        p, lambda r: r["chunks"][5]["sentences"][0].__setitem__(0, "所有区都是第一名。"))),
    "source planted": ("chunks.json", lambda p: edit_json(p, lambda r: first_case(r).update(source="/etc/passwd"))),
    "num_docs edited": ("bm25/params.index.json", lambda p: edit_json(p, lambda r: r.update(num_docs=10))),
    "npy bytes flipped": ("bm25/data.csc.index.npy", flip_bytes),
    "vectors zeroed": ("vectors.faiss", zero_vectors),
    "vocabulary emptied": ("bm25/vocab.index.json", lambda p: p.write_text("{}")),
    "user dictionary emptied": ("userdict.txt", lambda p: p.write_text("")),
}


@pytest.mark.parametrize("name", TAMPERING)
def test_tampered_files_are_refused_with_the_fix(copy_cfg, name):
    path, tamper = TAMPERING[name]
    tamper(copy_cfg.index_dir / path)
    with pytest.raises(idx.IndexCorrupt, match="rag index --rebuild"):
        idx.load(copy_cfg)


def rehash(cfg) -> None:
    """What someone who also rewrites the manifest's hashes would do."""
    edit_json(cfg.index_dir / "manifest.json", lambda m: m.update(files=idx.file_hashes(cfg.index_dir)))


@pytest.mark.parametrize("name, message", [("district changed", "案例信息与原文不符"), ("sentence edited", "引文与原文不符"),
                                           ("source planted", "出处不在文档库中")])
def test_records_are_checked_against_the_seeds_themselves(copy_cfg, name, message):
    path, tamper = TAMPERING[name]
    tamper(copy_cfg.index_dir / path)
    rehash(copy_cfg)
    with pytest.raises(idx.IndexCorrupt, match=message):
        idx.load(copy_cfg)


def test_a_rehashed_copy_still_loads(copy_cfg, index):
    rehash(copy_cfg)  # the check itself accepts what the build wrote
    assert len(idx.load(copy_cfg).chunks) == len(index.chunks)


def test_the_manifest_hashes_every_index_file(index):
    files = index.manifest["files"]
    on_disk = {p.relative_to(index.dir).as_posix() for p in Path(index.dir).rglob("*") if p.is_file()}
    assert set(files) == on_disk - {"manifest.json"}
    assert all(len(h) == 64 for h in files.values())


def test_the_chat_never_reads_outside_the_seeds(cfg):
    from rag.answer import Citation
    from ui.render import Renderer

    cite = Citation(1, "虹口区", "c", "t", "集", 2021, "/etc/passwd", (1, 1), "root")
    html = Renderer({}, cfg.seeds).source(cite)
    assert "root:x" not in html and "/bin/" not in html


# -- leftovers of a killed build ----------------------------------------------------------------
def dead_pid() -> int:
    """The id of a process that has ended, as a killed build's is."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_kill_between_the_renames_is_recovered_not_rebuilt(copy_cfg, index):
    # _swap_in had moved the old index aside and not yet moved the new one in.
    home, pid = copy_cfg.home, dead_pid()
    shutil.copytree(copy_cfg.index_dir, home / f".index.old-{pid}")
    copy_cfg.index_dir.rename(home / f".index.tmp-{pid}")
    assert len(idx.load(copy_cfg).chunks) == len(index.chunks)
    assert sorted(p.name for p in home.iterdir() if p.name != "cache") == ["index"]  # cache: jieba's


def test_leftovers_of_killed_builds_are_removed(copy_cfg):
    home = copy_cfg.home
    unfinished = home / f".index.tmp-{dead_pid()}"
    unfinished.mkdir()
    (unfinished / "vectors.faiss").write_bytes(b"half")
    shutil.copytree(copy_cfg.index_dir, home / f".index.old-{dead_pid()}")
    running = home / f".index.tmp-{os.getpid()}"  # a build still under way: not ours to touch
    running.mkdir()
    idx.load(copy_cfg)
    assert sorted(p.name for p in home.iterdir() if p.name != "cache") == sorted(["index", running.name])


def test_an_unfinished_leftover_never_becomes_the_index(copy_cfg):
    unfinished = copy_cfg.home / f".index.tmp-{dead_pid()}"
    copy_cfg.index_dir.rename(unfinished)
    (unfinished / "manifest.json").unlink()  # killed before the manifest was written
    with pytest.raises(idx.IndexMissing):
        idx.load(copy_cfg)
    assert not unfinished.exists()


# -- a stale index says it is rebuilding, and shows how far it got --------------------------------
@pytest.fixture
def small_seeds(tmp_path, cfg):
    """One short document of the five: a real build in seconds."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    manifest = json.loads((cfg.seeds / "manifest.json").read_text(encoding="utf-8"))
    manifest["documents"] = [d for d in manifest["documents"] if d["file"].startswith("004_")]
    (seeds / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    shutil.copy(cfg.seeds / manifest["documents"][0]["file"], seeds)
    return seeds


def test_a_stale_index_says_it_is_rebuilding(small_seeds, tmp_path, capfd):
    home = tmp_path / "home"
    idx.build(Config(seeds=small_seeds, home=home), progress=False)
    capfd.readouterr()
    rebuilt = idx.ensure(Config(seeds=small_seeds, home=home, chunk_size=200), progress=True)
    err = capfd.readouterr().err
    assert rebuilt.manifest["chunk_size"] == 200
    assert "索引已过期" in err and "正在重建索引" in err and "100%" in err  # the embedding's progress bar
    assert "请运行" not in err  # no instruction to do what is already being done

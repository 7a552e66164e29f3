"""Files → the document store under RAG_HOME, and the index rebuilt from it, incrementally and safely.

The store (config.documents) is a folder in the seeds' own format: manifest.json and one UTF-8
text file per document, one paragraph a line, with `<id>.where.json` beside it giving each line's
place in the original file. The bundled seeds are its first documents, copied byte for byte the
first time anything is ingested; from then on Config.seeds points at the store.

A change goes: a copy of the store is staged in a temp directory and changed there → the index is
built from it (rag.index.build: its own temp directory and rename; vectors come from the embedding
cache, so only new text is embedded) → the staged store is renamed into place. A kill at any
point before the renames leaves the previous store and index answering. That last step is the
one point where documents change: `Change` names the ids added, replaced and removed, with the new
Index, for anything that mirrors the index elsewhere (a vector database syncing by Case.document).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.chunking import chunk_cases
from rag.config import Config
from rag.corpus import CorpusError, describe, load_cases, load_manifest, where_file
from rag.documents import CONVERTIBLE, KINDS, DocumentError, parse
from rag.milvus import open_store


@dataclass(frozen=True)
class Change:
    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()  # files whose content is already stored (under this or another id)
    failed: tuple[tuple[str, str], ...] = ()  # (file, why)
    cases: int = 0  # the change in the number of cases and chunks
    chunks: int = 0
    index: object = field(default=None, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)

    def summary(self) -> str:
        parts = []
        if self.added:
            parts.append(f"+{len(self.added)} 文件")
        if self.replaced:
            parts.append(f"更新 {len(self.replaced)} 文件")
        if self.removed:
            parts.append(f"-{len(self.removed)} 文件")
        if self.changed:
            parts.append(f"{self.cases:+d} 个案例，{self.chunks:+d} 段")
        head = "，".join(parts) or "没有变化"
        tail = [f"跳过 {len(self.unchanged)} 个未变文件"] if self.unchanged else []
        tail += [f"{len(self.failed)} 个文件未导入"] if self.failed else []
        return head + ("；" + "，".join(tail) if tail else "")

    def to_dict(self) -> dict:
        return {"added": list(self.added), "replaced": list(self.replaced), "removed": list(self.removed),
                "unchanged": list(self.unchanged), "failed": [{"file": f, "error": e} for f, e in self.failed],
                "cases": self.cases, "chunks": self.chunks, "summary": self.summary()}


def doc_id(path: Path) -> str:
    """A document's id, from its file name: the same name again replaces it."""
    return re.sub(r"[^\w\-]+", "-", path.stem).strip("-")[:60] or "doc"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_in(paths: list[Path]) -> Iterator[Path | tuple[Path, str]]:
    """Every document under the paths, folders walked in name order; a path that cannot be a
    document comes as (path, why). Files of other types inside a folder are passed over."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()
                              and not p.name.startswith((".", "~$")) and p.suffix.lower() in KINDS + CONVERTIBLE)
        elif not path.exists():
            yield path, f"找不到文件：{path}"
        else:
            yield path


@contextmanager
def locked(cfg: Config):
    """One change of the store at a time; a second ingest waits for the first."""
    cfg.home.mkdir(parents=True, exist_ok=True)
    with open(cfg.home / ".documents.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def current(cfg: Config) -> tuple[Path, dict]:
    """The folder documents come from now (the store, or the bundled seeds before the first
    ingest) and its manifest."""
    root = cfg.documents if (cfg.documents / "manifest.json").is_file() else cfg.seeds
    return root, load_manifest(root)


def stage(cfg: Config, root: Path) -> Path:
    """A copy of the documents to change, beside the store; leftovers of killed runs go first."""
    store = cfg.documents
    store.parent.mkdir(parents=True, exist_ok=True)
    for old in store.parent.glob(f".{store.name}.*-*"):
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = store.parent / f".{store.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(root, tmp, ignore=shutil.ignore_patterns(".*"))
    return tmp


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def counts(root: Path, cfg: Config) -> tuple[int, int]:
    cases = load_cases(root)
    return len(cases), len(chunk_cases(cases, root, cfg.chunk_size))


def store_document(tmp: Path, path: Path, id_: str, digest: str, soffice: str = "") -> dict:
    """Parse the file, describe it, and write its text and places into the staged store. The
    document alone must parse into cases, or nothing of it is kept."""
    parsed = parse(path, soffice)
    name = f"{id_}.txt"
    lines = [line.text for line in parsed.lines]
    entry = describe(id_, name, lines, parsed.title)
    entry |= {"original": path.name, "format": parsed.kind, "sha256": digest, "bytes": path.stat().st_size,
              "ingested_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "headings": {str(n): x.level for n, x in enumerate(parsed.lines, 1) if x.level}}
    if entry["year"] is None:
        raise DocumentError(f"文中找不到年份（标题或正文中的“20xx年”）：{path.name}")
    (tmp / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp / where_file(name)).write_text(json.dumps([x.where for x in parsed.lines], ensure_ascii=False),
                                        encoding="utf-8")
    probe = tmp / ".probe"
    probe.mkdir(exist_ok=True)
    try:  # this document alone, so that one bad file cannot stop the others
        shutil.copy(tmp / name, probe / name)
        (probe / "manifest.json").write_text(json.dumps({"documents": [entry]}, ensure_ascii=False), encoding="utf-8")
        if not load_cases(probe):
            raise DocumentError(f"没有从文件中读出任何案例：{path.name}")
    except (CorpusError, KeyError, ValueError, IndexError, StopIteration) as e:
        (tmp / name).unlink()
        (tmp / where_file(name)).unlink()
        raise DocumentError(f"无法把文件分成案例：{path.name}（{type(e).__name__}: {e}）") from None
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return entry


def ingest(cfg: Config, paths: list[Path], say=lambda msg: print(msg, file=sys.stderr),
           embedder=None, progress: bool = True) -> Change:
    """Add or replace the documents at `paths`; unchanged files are skipped without any work."""
    with locked(cfg):
        root, manifest = current(cfg)
        docs = {d["id"]: d for d in manifest["documents"]}
        by_hash = {d["sha256"]: d["id"] for d in docs.values() if d.get("sha256")}
        by_hash |= {sha256(root / d["file"]): d["id"] for d in docs.values() if not d.get("sha256")}
        todo, unchanged, failed = [], [], []
        for item in files_in(paths):
            if isinstance(item, tuple):
                failed.append((str(item[0]), item[1]))
                continue
            digest = sha256(item)
            if digest in by_hash:
                unchanged.append(item.name if by_hash[digest] == doc_id(item) else f"{item.name}（与 {by_hash[digest]} 相同）")
                continue
            by_hash[digest] = doc_id(item)
            todo.append((item, digest))
        if not todo:
            change = Change(unchanged=tuple(unchanged), failed=tuple(failed))
            say(change.summary())
            return change
        tmp = stage(cfg, root)
        try:
            added, replaced = [], []
            for n, (path, digest) in enumerate(todo, 1):
                id_ = doc_id(path)
                say(f"[{n}/{len(todo)}] 解析 {path.name}")
                try:
                    entry = store_document(tmp, path, id_, digest, cfg.soffice)
                except DocumentError as e:
                    failed.append((path.name, str(e)))
                    say(f"  未导入：{e}")
                    continue
                if id_ in docs:
                    replaced.append(id_)
                    if docs[id_]["file"] != entry["file"]:
                        (tmp / docs[id_]["file"]).unlink(missing_ok=True)
                else:
                    added.append(id_)
                docs[id_] = entry
                say(f"  {entry['title'][:40]}（{entry['year']}，{entry['layout']}）")
            change = Change(tuple(added), tuple(replaced), (), tuple(unchanged), tuple(failed))
            if not change.changed:
                say(change.summary())
                return change
            return commit(cfg, root, tmp, list(docs.values()), change, say, embedder, progress)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def remove(cfg: Config, ids: list[str], say=lambda msg: print(msg, file=sys.stderr),
           embedder=None, progress: bool = True) -> Change:
    with locked(cfg):
        root, manifest = current(cfg)
        docs = {d["id"]: d for d in manifest["documents"]}
        missing = [i for i in ids if i not in docs]
        if missing:
            raise DocumentError(f"没有这份文档：{'、'.join(missing)}（rag docs 列出全部文档的 id）")
        if len(set(ids)) == len(docs):
            raise DocumentError("不能删除全部文档：索引至少需要一份文档")
        tmp = stage(cfg, root)
        try:
            for i in ids:
                (tmp / docs[i]["file"]).unlink(missing_ok=True)
                (tmp / where_file(docs[i]["file"])).unlink(missing_ok=True)
            kept = [d for d in manifest["documents"] if d["id"] not in ids]
            return commit(cfg, root, tmp, kept, Change(removed=tuple(ids)), say, embedder, progress)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def commit(cfg: Config, root: Path, tmp: Path, documents: list[dict], change: Change, say,
           embedder, progress: bool) -> Change:
    """Index the staged documents, then put them in place of the store: the one point where the
    documents change."""
    from rag import index as idx

    (tmp / "manifest.json").write_text(json.dumps({"documents": documents}, ensure_ascii=False, indent=2),
                                       encoding="utf-8")
    before, after = counts(root, cfg), counts(tmp, cfg)
    say(f"重建索引：{after[0]} 个案例，{after[1]} 段")
    built = idx.build(replace(cfg, seeds=tmp), embedder, progress)
    store = cfg.documents
    old = store.parent / f".{store.name}.old-{os.getpid()}"
    if store.exists():
        store.rename(old)
    tmp.rename(store)
    shutil.rmtree(old, ignore_errors=True)
    # Where every replica reads Milvus, the changed documents go there now, not at the next start.
    open_store(cfg, built, progress)
    change = replace(change, cases=after[0] - before[0], chunks=after[1] - before[1], index=built)
    say(change.summary())
    return change


def listing(cfg: Config) -> list[dict]:
    """Every stored document: id, title, kind, year, issuer, format, cases, chunks, hash, when ingested."""
    root, manifest = current(cfg)
    cases = load_cases(root)
    per_doc_cases, per_doc_chunks = {}, {}
    for c in cases:
        per_doc_cases[c.document] = per_doc_cases.get(c.document, 0) + 1
    for ch in chunk_cases(cases, root, cfg.chunk_size):
        per_doc_chunks[ch.case.document] = per_doc_chunks.get(ch.case.document, 0) + 1
    return [{"id": d["id"], "title": d["title"], "kind": d["kind"], "year": d["year"], "issuer": d.get("issuer"),
             "format": d.get("format", "txt"), "original": d.get("original", d["file"]), "file": d["file"],
             "cases": per_doc_cases.get(d["id"], 0), "chunks": per_doc_chunks.get(d["id"], 0),
             "sha256": d.get("sha256") or sha256(root / d["file"]), "ingested_at": d.get("ingested_at")}
            for d in manifest["documents"]]

"""What the index's integrity checks cost at each load: file hashes, and cases and quotes re-read
from the seeds, against the whole load.

    python bench/integrity.py [--repeat 20]

Uses the index under RAG_HOME (built first if missing). Writes bench/results/integrity.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag import index as idx  # noqa: E402
from rag.config import Config  # noqa: E402


def timed_ms(fn, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        idx.read_lines.cache_clear()  # as at a process's start: the seeds are read again
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"min": round(times[0], 1), "median": round(times[len(times) // 2], 1), "max": round(times[-1], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    cfg = Config.from_env()
    index = idx.ensure(cfg)
    files = [p for p in cfg.index_dir.rglob("*") if p.is_file()]
    result = {
        "index_files": len(files), "index_mb": round(sum(p.stat().st_size for p in files) / 2**20, 2),
        "chunks": len(index.chunks), "cases": len(index.cases),
        "hashes_ms": timed_ms(lambda: idx.verify_files(cfg.index_dir, index.manifest), args.repeat),
        "seeds_ms": timed_ms(lambda: idx.verify_sources(cfg.seeds, index.cases, index.chunks), args.repeat),
        "whole_load_ms": timed_ms(lambda: idx.load(cfg), max(3, args.repeat // 4)),
        "load_average": os.getloadavg(), "cpu_count": os.cpu_count(), "run_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "integrity.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    h, s, w = result["hashes_ms"], result["seeds_ms"], result["whole_load_ms"]
    (args.out / "integrity.md").write_text("\n".join([
        "# The index's integrity checks at load", "",
        f"`python bench/integrity.py`, {result['cpu_count']} cores, run {result['run_at']}, load average "
        f"{' / '.join(f'{x:.2f}' for x in result['load_average'])}. The index: {result['index_files']} files, "
        f"{result['index_mb']} MB, {result['chunks']} chunks of {result['cases']} cases.", "",
        "| check | min | median | max |", "|---|---|---|---|",
        f"| SHA-256 of every index file against the manifest | {h['min']} ms | {h['median']} ms | {h['max']} ms |",
        f"| cases re-parsed from seeds/, every quote found at its line, sources inside seeds/ | {s['min']} ms | "
        f"{s['median']} ms | {s['max']} ms |",
        f"| the whole `rag.index.load()` (both checks included; jieba's dictionary is most of it) | {w['min']} ms | "
        f"{w['median']} ms | {w['max']} ms |", "",
    ]), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

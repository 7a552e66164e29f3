"""The `rag` command: one group, one subcommand per job."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from rag.config import Config

app = typer.Typer(
    help="政策案例问答：上海各区优化营商环境案例的检索问答，每个回答都注明区、案例和原文出处。",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


@app.callback()
def main():
    """政策案例问答 (policy-case Q&A). Data and index live under RAG_HOME."""


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@app.command()
def cases(as_json: bool = typer.Option(False, "--json", help="Print a JSON list for other tools.")):
    """List the cases read from seeds/: id, district, year, collection, title, lines, chunks."""
    from collections import Counter

    from rag.chunking import chunk_cases
    from rag.corpus import load_cases

    cfg = Config.from_env()
    all_cases = load_cases(cfg.seeds)
    per_case = Counter(c.case.id for c in chunk_cases(all_cases, cfg.seeds, cfg.chunk_size))
    if as_json:
        emit_json([c.to_dict() | {"chunks": per_case[c.id]} for c in all_cases])
        return
    table = Table(title=f"{len(all_cases)} 个案例，来自 {cfg.seeds}")
    for col in ("id", "district", "year", "collection", "title", "lines", "chunks"):
        table.add_column(col, overflow="fold")
    for c in all_cases:
        table.add_row(c.id, c.district or "（文中未注明所属区）", str(c.year), c.collection[:18],
                      c.title, f"{c.source[:3]} {c.lines[0]}–{c.lines[1]}", str(per_case[c.id]))
    console.print(table)


if __name__ == "__main__":
    app()

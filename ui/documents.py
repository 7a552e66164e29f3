"""The 文档 tab: the admin uploads a document, watches it being ingested, and removes documents.

It is built only when the chat has a login and an admin (RAG_AUTH, RAG_ADMIN) and is shown to the
admin alone. Hiding is no protection: anyone logged in can call the tab's events, so every one of
them checks the login again on the server. A change goes through rag.ingest, as `rag ingest` and
`rag docs remove` do, and the chain then answers from the new index at once.
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path

import gradio as gr

from rag.chain import AnswerChain
from rag.config import Config
from rag.documents import CONVERTIBLE, KINDS, DocumentError
from rag.ingest import Change, ingest, listing, remove

FILE_TYPES = list(KINDS + CONVERTIBLE)
HEADERS = ["id", "标题", "类型", "年份", "案例", "片段", "导入时间"]
REFUSED = "只有管理员（RAG_ADMIN 所设的登录）可以管理文档。"
log = logging.getLogger("rag.chat")


def is_admin(request: gr.Request | None, cfg: Config) -> bool:
    return bool(cfg.admin and cfg.auth and request is not None and request.username == cfg.admin)


class Documents:
    """The tab's actions, each a plain method of (inputs…, request), so that tests can call them."""

    def __init__(self, chain: AnswerChain, cfg: Config):
        self.chain = chain
        self.cfg = cfg

    def check(self, request: gr.Request | None) -> None:
        if not is_admin(request, self.cfg):
            raise gr.Error(REFUSED, print_exception=False)

    def table(self) -> tuple[list[list], gr.Dropdown]:
        """The stored documents, and the ids the remove control offers."""
        docs = listing(self.cfg)
        rows = [[d["id"], d["title"], d["kind"], d["year"], d["cases"], d["chunks"],
                 (d["ingested_at"] or "（随附）").replace("T", " ")] for d in docs]
        return rows, gr.Dropdown(choices=[d["id"] for d in docs], value=None)

    def opened(self, request: gr.Request):
        """On page load: the tab and its contents for the admin, nothing for anyone else."""
        if not is_admin(request, self.cfg):
            return gr.Tab(visible=False), gr.skip(), gr.skip()
        return gr.Tab(visible=True), *self.table()

    def upload(self, path: str | None, request: gr.Request, progress=gr.Progress()):
        """Ingest the uploaded file; returns the log (ending with the change), the table, the ids
        and an emptied upload box."""
        self.check(request)
        if not path:
            raise gr.Error("请先选择文件。", print_exception=False)
        said = self.run(lambda say: ingest(self.cfg, [Path(path)], say=say, **self.quiet()), progress)
        return said, *self.table(), None

    def delete(self, doc_id: str | None, confirmed: bool, request: gr.Request, progress=gr.Progress()):
        self.check(request)
        if not doc_id:
            raise gr.Error("请先选择要删除的文档。", print_exception=False)
        if not confirmed:
            # The page shows an error's message as HTML.
            raise gr.Error(f"请先勾选“确认删除”：{escape(doc_id)} 删除后不会再被检索或引用。", print_exception=False)
        said = self.run(lambda say: remove(self.cfg, [doc_id], say=say, **self.quiet()), progress)
        return said, *self.table(), False

    def quiet(self) -> dict:
        # The chain's own embedder: a second model in memory only to embed new text would be waste;
        # no terminal progress bars on the server's stderr.
        return {"embedder": self.chain.answerer.retriever.embedder, "progress": False}

    def run(self, action, progress) -> str:
        """Runs the change, showing each step as it happens; its log, with any error, is the result.
        A failed change leaves the previous documents and index in place (rag.ingest stages it)."""
        said = []

        def say(message: str) -> None:
            said.append(message)
            progress((len(said), None), desc=message, unit="步")

        try:
            change: Change = action(say)
        except DocumentError as e:
            say(f"未完成：{e}")
        except Exception as e:
            log.exception("文档变更失败")
            say(f"未完成（{type(e).__name__}: {e}）；原有的文档和索引不变。")
        else:
            if change.changed:
                self.chain.use(change.index)
        return "\n".join(said)

    def build(self, demo: gr.Blocks) -> list:
        """The tab, hidden until the page load shows it to the admin; returns the events that change
        the documents, for the page to refresh what depends on them."""
        with gr.Tab("文档", id="documents-tab", visible=False) as tab:
            gr.Markdown("上传的文件加入检索（同名文件替换旧版本，内容未变的文件跳过）；删除的文档不再被检索或引用。"
                        "支持 .docx .pdf .txt .md .html；.doc .wps 需服务器装有 LibreOffice。")
            table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True,
                                 elem_id="documents-table")
            with gr.Row():
                upload = gr.File(label="上传文件并导入", file_types=FILE_TYPES, type="filepath", scale=2,
                                 elem_id="documents-upload")
                with gr.Column(scale=1):
                    doc_id = gr.Dropdown([], label="要删除的文档 id", elem_id="documents-remove-id")
                    confirmed = gr.Checkbox(False, label="确认删除", elem_id="documents-remove-confirm")
                    delete = gr.Button("删除", variant="stop", elem_id="documents-remove")
            status = gr.Textbox(label="进度与结果", lines=6, interactive=False, elem_id="documents-status")
        # One change at a time across all sessions, so that the index swapped in last is the newest.
        one_at_a_time = dict(concurrency_limit=1, concurrency_id="documents", api_visibility="private")
        demo.load(self.opened, None, [tab, table, doc_id], api_visibility="private")
        return [upload.upload(self.upload, [upload], [status, table, doc_id, upload], **one_at_a_time),
                delete.click(self.delete, [doc_id, confirmed], [status, table, doc_id, confirmed], **one_at_a_time)]

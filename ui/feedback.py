"""👍 / 👎 under every answer, with an optional comment and "the right case is …".

A thumb click stores the verdict at once (one click is enough); the panel that opens then lets
the person add a comment or pick the right case, which amends the same row.
"""

from __future__ import annotations

import gradio as gr

from rag.answer import NO_DISTRICT
from rag.corpus import Case
from rag.feedback import FeedbackStore

UNSURE = ""


def case_choices(cases: dict[str, Case]) -> list[tuple[str, str]]:
    return [("（不确定）", UNSURE)] + [(f"{c.id} · {c.district or NO_DISTRICT} · 《{c.title}》", c.id)
                                     for c in sorted(cases.values(), key=lambda c: c.id)]


def build(chatbot: gr.Chatbot, turns: gr.State, store: FeedbackStore, cases, version, with_login: bool):
    """`turns`: message index → {question, history, answer} of each answer shown in `chatbot`.
    `cases()` and `version()` give the index's cases and version at each event: the 文档 tab swaps
    in a new index while the server runs. Returns the function that offers the new cases after
    such a change, and its outputs."""
    row_id = gr.State(None)
    with gr.Group(visible=False, elem_id="feedback") as panel:
        status = gr.Markdown(elem_id="feedback-status")
        with gr.Row():
            comment = gr.Textbox(label="补充说明（可选）", placeholder="哪里不对？缺了什么？", scale=3,
                                 elem_id="feedback-comment")
            right_case = gr.Dropdown(case_choices(cases()), value=UNSURE, label="正确的案例是（可选）", scale=2,
                                     elem_id="feedback-case")
        send = gr.Button("提交补充", size="sm", elem_id="feedback-send")

    def on_like(turns_now: dict, like: gr.LikeData, request: gr.Request):
        turn = turns_now.get(like.index if isinstance(like.index, int) else like.index[0])
        if turn is None or like.liked not in (True, False):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        verdict = "up" if like.liked else "down"
        # A user name only behind a login; never an address.
        user = getattr(request, "username", None) if with_login else None
        new_id = store.record(turn["question"], turn["history"], turn["answer"], verdict, version(), user=user)
        said = "👍 已记录，谢谢。" if like.liked else "👎 已记录。愿意的话，说说哪里不对，或选出正确的案例："
        return new_id, gr.Group(visible=True), said, "", UNSURE

    def on_send(current: int | None, text: str, case_id: str):
        if current is None:
            return "请先点 👍 或 👎。"
        store.amend(current, text.strip(), case_id or None)
        return "补充已保存，谢谢。它会在人工审核后用于改进评测集。"

    def refresh():
        return (gr.Dropdown(choices=case_choices(cases()), value=UNSURE),)

    chatbot.like(on_like, [turns], [row_id, panel, status, comment, right_case], api_visibility="private")
    send.click(on_send, [row_id, comment, right_case], [status], api_visibility="private")
    return refresh, [right_case]

"""The one chain that the CLI, the chat and the eval all go through, as a LangChain Runnable.

`chain.invoke({"question": ..., "history": [...]})` returns an Answer.
`chain.stream(...)` yields the answer's text in pieces as it forms, then the finished Answer.
"""

from __future__ import annotations

from collections.abc import Iterator

from langchain_core.runnables import Runnable, RunnableConfig

from rag.answer import Answer, Answerer
from rag.config import Config
from rag.question import BadQuestion, clean, normalise, parse
from rag.retrieve import Filters

__all__ = ["AnswerChain", "BadQuestion", "build", "check_input", "clean", "normalise"]


def check_input(input) -> None:
    """The request's shape, whoever sends it (CLI batch line, chat API, Python): BadQuestion says
    what is wrong, before anything reaches the search."""
    def list_of(value, ok) -> bool:
        return value is None or isinstance(value, list) and all(ok(v) for v in value)

    if not isinstance(input, dict):
        raise BadQuestion('应为 {"question": "问题", "history": [...]} 形式的对象')
    if not (input.get("question") is None or isinstance(input["question"], str)):
        raise BadQuestion("question 应为文字。")
    if not list_of(input.get("history"), lambda m: isinstance(m, dict)
                   and list_of(m.get("case_ids"), lambda c: isinstance(c, str))):
        raise BadQuestion('history 应为 [{"role": "user"|"assistant", "content": "…"}] 形式的列表。')
    if not list_of(input.get("districts"), lambda d: isinstance(d, str)):
        raise BadQuestion('districts 应为区名的列表，例如 ["宝山区"]。')
    if not list_of(input.get("years"), lambda y: isinstance(y, int) and not isinstance(y, bool)):
        raise BadQuestion("years 应为年份（整数）的列表，例如 [2021]。")


class AnswerChain(Runnable):
    """Question (+ history, + optional filters) → Answer, extractive or through an LLM."""

    def __init__(self, answerer: Answerer, cfg: Config | None = None, llm=None):
        self.answerer = answerer
        self.cfg = cfg or Config.from_env()
        self.llm = llm

    @property
    def InputType(self):
        return dict

    @property
    def OutputType(self):
        return Answer

    def _prepare(self, input):
        if isinstance(input, str):
            input = {"question": input}
        check_input(input)
        query = parse(input.get("question") or "", input.get("history") or [], self.cfg.max_question_chars)
        filters = None
        if input.get("districts") or input.get("years"):
            filters = Filters(tuple(input.get("districts") or ()), tuple(input.get("years") or ()),
                              collection_years=True)
        return input.get("question") or "", query, filters

    def invoke(self, input, config: RunnableConfig | None = None, **kwargs) -> Answer:
        answer = None
        for piece in self.stream(input, config):
            answer = piece
        return answer

    def stream(self, input, config: RunnableConfig | None = None, **kwargs) -> Iterator[str | Answer]:
        raw, query, filters = self._prepare(input)
        if query.note:
            yield f"（{query.note}）\n"
        grounded = self.answerer.answer(query, filters)
        if self.llm is not None and grounded.answerable:
            from rag.llm import generate

            answer = yield from generate(self.llm, query.text, grounded, self.answerer)
        else:
            answer = grounded
            for line in answer.answer.split("\n"):
                yield line + "\n"
        answer.question = raw
        if query.note:
            answer.answer = f"（{query.note}）\n{answer.answer}"
        yield answer


def build(cfg: Config | None = None, progress: bool = True, mode: str = "hybrid",
          steer: bool = True) -> AnswerChain:
    """Load (or build) the index and the query-time embedder once, and wire the chain.
    `mode` and `steer` are the Retriever's; the eval's ablation varies them."""
    from rag import index as index_mod
    from rag.retrieve import Retriever

    cfg = cfg or Config.from_env()
    idx = index_mod.ensure(cfg, progress=progress)
    embedder = index_mod.load_embedder(cfg, engine="auto")
    if embedder.model_id != idx.manifest["model"]:
        raise index_mod.IndexStale(
            f"索引是用另一个模型建的（{idx.manifest['model']}，当前为 {embedder.model_id}）。请运行 rag index --rebuild")
    llm = None
    if cfg.llm_base_url and cfg.llm_model:
        from rag.llm import chat_model

        llm = chat_model(cfg)
    return AnswerChain(Answerer(Retriever(idx, embedder, cfg, mode, steer)), cfg, llm)

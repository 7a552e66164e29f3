"""The one chain that the CLI, the chat and the eval all go through, as a LangChain Runnable.

`chain.invoke({"question": ..., "history": [...]})` returns an Answer.
`chain.stream(...)` yields the answer's text in pieces as it forms, then the finished Answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from langchain_core.runnables import Runnable, RunnableConfig

from rag.answer import Answer, Answerer
from rag.config import Config, ConfigError
from rag.corpus import location
from rag.milvus import open_store
from rag.question import EMPTY, INVISIBLE, BadQuestion, clean, cut, parse
from rag.retrieve import Filters, Retriever

__all__ = ["AnswerChain", "BadQuestion", "ShortQuery", "budget", "build", "check_input"]


@dataclass(frozen=True)
class Request:
    asked: str  # as the user wrote it, within the budget and cleaned of what no encoder accepts
    history: list[dict]
    note: str


def budget(input: dict, cfg: Config) -> Request:
    """The request cut to its cost budget before any work: the question, each history item, the
    last max_history_items items, and max_request_chars in all (the newest turns kept first).
    One long request must cost one short request's time, for its sender and everyone else."""
    # As the user wrote it (the answer quotes it back); rag.question normalises this bounded text.
    asked, note = cut(input.get("question") or "", cfg.max_question_chars)
    if not clean(asked, cfg.max_question_chars)[0]:
        raise BadQuestion(EMPTY)
    left = cfg.max_request_chars - len(asked)
    history = []
    for m in reversed((input.get("history") or [])[-cfg.max_history_items:]):
        # Not NFKC: an earlier answer's first line must still name its case exactly, （…） and all.
        content = INVISIBLE.sub("", (m.get("content") or "")[:min(cfg.max_history_item_chars, max(left, 0))]).strip()
        if content:
            kept = {"role": m.get("role"), "content": content}
            if m.get("case_ids"):
                kept["case_ids"] = m["case_ids"]
            history.insert(0, kept)
            left -= len(content)
    return Request(asked, history, note)


class ShortQuery:
    """Query embeddings of at most QUERY_TOKENS tokens, well inside the model's one window of 512.
    The engine embeds longer text window by window (a 2,000-character question cost 8–12 s) and
    its cost grows with every token (512 tokens: ~0.4 s, 20 tokens: ~8 ms), while the longest gold
    query is 80 tokens. A longer text keeps its start and its end: a pasted question's start, and a
    follow-up's earlier turn and the question itself. Everything else is the wrapped embedder's."""

    QUERY_TOKENS = 128

    def __init__(self, inner):
        self.inner = inner

    def embed_queries(self, texts):
        return self.inner.embed_queries([self.fit(t) for t in texts])

    def fit(self, text: str) -> str:
        if self.tokens(text) <= self.QUERY_TOKENS:
            return text
        half = self.QUERY_TOKENS // 2
        head = self.longest(len(text), lambda n: self.tokens(text[:n]) <= half)
        tail = self.longest(len(text) - head, lambda n: self.tokens(text[len(text) - n:]) <= half)
        return f"{text[:head]} {text[len(text) - tail:]}"

    def tokens(self, text: str) -> int:
        return self.inner.token_count(text, "query")  # the tokenizer alone: microseconds

    @staticmethod
    def longest(n: int, fits) -> int:
        """The largest k ≤ n with fits(k), by bisection (fits is monotone)."""
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo

    def __getattr__(self, name):
        return getattr(self.inner, name)




def check_input(input) -> None:
    """The request's shape, whoever sends it (CLI batch line, chat API, Python): BadQuestion says
    what is wrong, before anything reaches the search."""
    def list_of(value, ok) -> bool:
        return value is None or isinstance(value, list) and all(ok(v) for v in value)

    if not isinstance(input, dict):
        raise BadQuestion('应为 {"question": "问题", "history": [...]} 形式的对象')
    if not (input.get("question") is None or isinstance(input["question"], str)):
        raise BadQuestion("question 应为文字。")
    if not list_of(input.get("history"), lambda m: isinstance(m, dict) and isinstance(m.get("content") or "", str)
                   and list_of(m.get("case_ids"), lambda c: isinstance(c, str))):
        raise BadQuestion('history 应为 [{"role": "user"|"assistant", "content": "…"}] 形式的列表。')
    if not list_of(input.get("districts"), lambda d: isinstance(d, str)):
        raise BadQuestion('districts 应为区名的列表，例如 ["宝山区"]。')
    if not list_of(input.get("years"), lambda y: isinstance(y, int) and not isinstance(y, bool)):
        raise BadQuestion("years 应为年份（整数）的列表，例如 [2021]。")
    if not list_of(input.get("documents"), lambda d: isinstance(d, str)):
        raise BadQuestion('documents 应为文档 id 的列表，例如 ["2021"]（rag docs 列出全部文档）。')


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
        request = budget(input, self.cfg)
        query = replace(parse(request.asked, request.history, self.cfg.max_question_chars), note=request.note)
        filters = None
        if input.get("districts") or input.get("years") or input.get("documents"):
            filters = Filters(tuple(input.get("districts") or ()), tuple(input.get("years") or ()),
                              collection_years=True, documents=tuple(input.get("documents") or ()))
        return request.asked, query, filters

    def invoke(self, input, config: RunnableConfig | None = None, **kwargs) -> Answer:
        answer = None
        for piece in self.stream(input, config):
            answer = piece
        return answer

    def stream(self, input, config: RunnableConfig | None = None, **kwargs) -> Iterator[str | Answer]:
        raw, query, filters = self._prepare(input)
        answerer = self.answerer  # once: an index swapped in by use() meanwhile is for the next question
        if query.note:
            yield f"（{query.note}）\n"
        grounded = answerer.answer(query, filters)
        if self.llm is not None and grounded.answerable:
            from rag.llm import generate

            answer = yield from generate(self.llm, query.text, grounded, answerer)
        else:
            answer = grounded
            for line in answer.answer.split("\n"):
                yield line + "\n"
        answer.question = raw
        seeds = answerer.retriever.cfg.seeds  # the documents that index was built from
        answer.citations = [replace(c, location=location(seeds, c.source, c.lines[0]))
                            for c in answer.citations]
        if query.note:
            answer.answer = f"（{query.note}）\n{answer.answer}"
        yield answer

    def use(self, index) -> None:
        """Answer from `index` (the one an ingest or a removal returns) from now on, without a
        restart. The new Answerer is complete before it replaces the old one in a single assignment,
        so every question runs wholly on one index or the other."""
        old = self.answerer.retriever
        # After the first ingest the documents live in the store, no longer in the bundled seeds.
        cfg = replace(old.cfg, seeds=old.cfg.documents)
        store = open_store(cfg, index, progress=False)  # synced by the ingest: finds nothing to do
        self.answerer = Answerer(Retriever(index, old.embedder, cfg, old.mode, old.steer, store),
                                 self.answerer.decisions)


def build(cfg: Config | None = None, progress: bool = True, mode: str = "hybrid",
          steer: bool = True, serving: bool = False) -> AnswerChain:
    """Load (or build) the index and the query-time embedder once, and wire the chain.
    `mode` and `steer` are the Retriever's; the eval's ablation varies them. `serving`: the
    process will answer many questions, so the faster query engine starts in the background
    after the first."""
    from rag import index as index_mod

    cfg = cfg or Config.from_env()
    embedder = index_mod.load_embedder(cfg)
    try:
        embedder.dim  # starts the engine now: a model that cannot load is a setting to fix, not a traceback
    except Exception as e:
        reason = " ".join(str(e).split())[:200]  # one line
        raise ConfigError(f"RAG_MODEL={cfg.model}：无法加载向量模型（{type(e).__name__}: {reason}）") from None
    idx = index_mod.ensure(cfg, embedder, progress=progress)
    if serving:
        embedder.upgrade_queries()
    store = open_store(cfg, idx, progress)
    llm = None
    if cfg.llm_base_url and cfg.llm_model:
        from rag.llm import chat_model

        llm = chat_model(cfg)
    return AnswerChain(Answerer(Retriever(idx, ShortQuery(embedder), cfg, mode, steer, store)), cfg, llm)

"""The one chain that the CLI, the chat and the eval all go through, as a LangChain Runnable.

`chain.invoke({"question": ..., "history": [...]})` returns an Answer.
`chain.stream(...)` yields the answer's text in pieces as it forms, then the finished Answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from langchain_core.runnables import Runnable, RunnableConfig

from rag.answer import Answer, Answerer, detect_kind
from rag.config import Config, ConfigError
from rag.corpus import districts_in, place_mentions
from rag.retrieve import Filters

# "后来有升级版吗？": another case on the same topic, not the one just shown.
ANOTHER = re.compile(r"后来|升级|类似|别的|其他|另外的|还有.{0,4}(做法|案例)")
FOLLOW_UP = re.compile(r"^(那么?|还有|另外|它|他们|这个|这些|该|其|此|这)|呢[？?]?$|"
                       r"后来|上面|刚才|前面|这项|这一|该案例|它们|他们|其中|这个做法|那个")
# Lone surrogates too: Python's stand-ins for undecodable bytes, which nothing can encode.
INVISIBLE = re.compile(r"[\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


class BadQuestion(ValueError):
    """A question that cannot be asked; the message is for the user."""


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalise(question: str, max_chars: int) -> tuple[str, str]:
    """(the question as searched, a note for the user). Cut to max_chars first: NFKC is quadratic on
    runs of combining marks, so it never sees more. Then invisible characters and lone surrogates go,
    full-width → half-width, Traditional → Simplified (浦東新區 finds 浦东新区)."""
    question = question or ""
    text = unicodedata.normalize("NFKC", INVISIBLE.sub("", question[:max_chars])).strip()
    if not text:
        raise BadQuestion("问题是空的：请输入一个关于上海各区优化营商环境案例的问题。")
    note = f"问题太长（{len(question)} 字），只按前 {max_chars} 字检索。" if len(question) > max_chars else ""
    return _t2s().convert(text), note


@dataclass(frozen=True)
class Request:
    question: str  # as searched
    asked: str  # as the user wrote it, within the budget and cleaned of what no encoder accepts
    history: list[dict]
    note: str


def budget(input: dict, cfg: Config) -> Request:
    """The request cut to its cost budget before any work: the question, each history item, the
    last max_history_items items, and max_request_chars in all (the newest turns kept first).
    One long request must cost one short request's time, for its sender and everyone else."""
    raw = input.get("question") or ""
    question, note = normalise(raw, cfg.max_question_chars)
    left = cfg.max_request_chars - len(question)
    history = []
    for m in reversed((input.get("history") or [])[-cfg.max_history_items:]):
        # Not NFKC: an earlier answer's first line must still name its case exactly, （…） and all.
        content = INVISIBLE.sub("", (m.get("content") or "")[:min(cfg.max_history_item_chars, max(left, 0))]).strip()
        if content:
            history.insert(0, {"role": m.get("role"), "content": content})
            left -= len(content)
    return Request(question, INVISIBLE.sub("", raw[:cfg.max_question_chars]), history, note)


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


def is_follow_up(question: str) -> bool:
    standalone = districts_in(question) or re.search(r"[“\"「]", question)
    return bool(FOLLOW_UP.search(question)) or (len(question) <= 14 and not standalone)


def turns(history: list[dict], role: str) -> list[str]:
    return [str(m["content"]) for m in history if m.get("role") == role and m.get("content")]


def last_answer_line(history: list[dict]) -> str:
    """The first line of the last answer: it names the district and the case."""
    replies = turns(history, "assistant")
    return replies[-1].split("\n")[0] if replies else ""


def resolve(question: str, history: list[dict]) -> tuple[str, str | None, Filters | None, str]:
    """A follow-up ("那徐汇区呢？", "它的成效呢？") read against the previous turn:
    (question to answer, kind, filters, extra search context)."""
    users = turns(history, "user")
    if not users or not is_follow_up(question):
        return question, None, None, ""
    # The topic comes from the last question that stood on its own, not from another follow-up.
    previous = next((u for u in reversed(users) if not is_follow_up(u)), users[-1])
    named = districts_in(question)
    own_kind = detect_kind(question) if re.search(r"成效|效果|多少|几|哪一?年|做法|举措|哪些区", question) else None
    if named:
        # "那徐汇区呢？": the previous question, asked of the newly named district(s).
        rewritten = previous
        for _, word, _ in sorted(place_mentions(previous), key=lambda m: -m[0]):
            rewritten = rewritten.replace(word, "", 1)
        rewritten = "".join(named) + rewritten
        return rewritten, own_kind or detect_kind(previous), Filters(tuple(named)), ""
    # "它的成效呢？": the same case as the previous answer, whose first line names it.
    last_answer = last_answer_line(history)
    focus = f"{previous} {last_answer}"
    districts = tuple(districts_in(last_answer)[:1]) or tuple(districts_in(previous))
    kind = own_kind or ("what_measure" if re.search(r"成效|效果", question) else detect_kind(previous))
    return question, kind, Filters(districts), focus


def shown_cases(history: list[dict], cases) -> tuple[str, ...]:
    """Case ids whose titles the last answer's first line names."""
    first = last_answer_line(history)
    return tuple(c.id for c in cases if c.title in first)


def check_input(input) -> None:
    """The request's shape, whoever sends it (CLI batch line, chat API, Python): BadQuestion says
    what is wrong, before anything reaches the search."""
    def list_of(value, ok) -> bool:
        return value is None or isinstance(value, list) and all(ok(v) for v in value)

    if not isinstance(input, dict):
        raise BadQuestion('应为 {"question": "问题", "history": [...]} 形式的对象')
    if not (input.get("question") is None or isinstance(input["question"], str)):
        raise BadQuestion("question 应为文字。")
    if not list_of(input.get("history"), lambda m: isinstance(m, dict) and isinstance(m.get("content") or "", str)):
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

    def _prepare(self, input) -> tuple[str, str, str | None, Filters | None, str, str, tuple[str, ...]]:
        if isinstance(input, str):
            input = {"question": input}
        check_input(input)
        request = budget(input, self.cfg)
        raw, question, note, history = request.asked, request.question, request.note, request.history
        resolved, kind, filters, focus = resolve(question, history)
        exclude = shown_cases(history, self.answerer.retriever.index.cases.values()) \
            if focus and ANOTHER.search(question) else ()
        if input.get("districts") or input.get("years"):
            filters = Filters(tuple(input.get("districts") or ()), tuple(input.get("years") or ()),
                              collection_years=True)
        return raw, note, kind, filters, focus, resolved, exclude

    def invoke(self, input, config: RunnableConfig | None = None, **kwargs) -> Answer:
        answer = None
        for piece in self.stream(input, config):
            answer = piece
        return answer

    def stream(self, input, config: RunnableConfig | None = None, **kwargs) -> Iterator[str | Answer]:
        raw, note, kind, filters, focus, question, exclude = self._prepare(input)
        if note:
            yield f"（{note}）\n"
        grounded = self.answerer.answer(question, kind=kind, filters=filters, focus=focus, exclude=exclude)
        if self.llm is not None and grounded.answerable:
            from rag.llm import generate

            answer = yield from generate(self.llm, question, grounded, self.answerer)
        else:
            answer = grounded
            for line in answer.answer.split("\n"):
                yield line + "\n"
        answer.question = raw
        if note:
            answer.answer = f"（{note}）\n{answer.answer}"
        yield answer


def build(cfg: Config | None = None, progress: bool = True, mode: str = "hybrid",
          steer: bool = True) -> AnswerChain:
    """Load (or build) the index and the query-time embedder once, and wire the chain.
    `mode` and `steer` are the Retriever's; the eval's ablation varies them."""
    from rag import index as index_mod
    from rag.retrieve import Retriever

    cfg = cfg or Config.from_env()
    embedder = index_mod.load_embedder(cfg, engine="auto")
    try:
        embedder.dim  # starts the engine now: a model that cannot load is a setting to fix, not a traceback
    except Exception as e:
        reason = " ".join(str(e).split())[:200]  # one line
        raise ConfigError(f"RAG_MODEL={cfg.model}：无法加载向量模型（{type(e).__name__}: {reason}）") from None
    idx = index_mod.ensure(cfg, embedder, progress=progress)
    llm = None
    if cfg.llm_base_url and cfg.llm_model:
        from rag.llm import chat_model

        llm = chat_model(cfg)
    return AnswerChain(Answerer(Retriever(idx, ShortQuery(embedder), cfg, mode, steer)), cfg, llm)

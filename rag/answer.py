"""Retrieved cases → an Answer: grounded sentences from the source, each with its citation.

The default needs no LLM: every sentence shown is source text, quoted exactly, with the line it
stands on. The question's wording decides the shape of the answer (which district, which
districts, what measures, a figure, a comparison). When the evidence is too weak, it says so
and offers the nearest cases as 可能相关, not as the answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from rag.chunking import Chunk, Sentence
from rag.corpus import Case
from rag.retrieve import Filters, Hit, Retriever

NO_DISTRICT = "（文中未注明所属区）"
NOT_FOUND = "现有案例材料中没有找到"
OTHER_CITIES = ("北京", "深圳", "广州", "杭州", "苏州", "南京", "成都", "天津", "重庆", "武汉", "西安",
                "宁波", "厦门", "青岛", "合肥", "长沙", "郑州", "济南", "雄安", "香港", "澳门", "台湾")

# A year that names a collection ("2018年…优秀案例"), not an event inside a case.
COLLECTION_YEAR = re.compile(r"(20\d\d)\s*年度?[^，。？?]{0,16}(优秀案例|案例集|特色案例|良好实践|评选|排名)")
# "多少名/几天/多少钱": the unit the question asks a figure in.
ASKED_UNIT = re.compile(r"(?:多少|几)(?:个|名)?([天个项家年月次人名倍户件笔条台场元万亿小时分钟秒%张])"
                        r"|多少[^，。？?]{0,4}?(钱|补贴|资金|投资|费用|经费)|(第)几")
NUMBER = r"(?:\d[\d.,，]*|[一二两三四五六七八九十百千万]+)\s*(?:多|余|近)?"

KIND_RULES = (
    ("comparison", re.compile(r"对比|比较|相比|区别|异同|不同|分别|各自|和.{1,8}(相比|比)")),
    ("list_districts", re.compile(r"哪些区|哪几个区|几个区|多少个区|有哪些地方|各区|都有哪些|哪些.{0,6}区")),
    ("which_district", re.compile(r"哪个区|哪一个区|哪个地方|哪区|是哪里|在哪里|哪个区县|是哪儿")),
    ("fact_number", re.compile(r"多少|几[天个项家年月次人名倍成户件笔条]|哪一?年|什么时候|何时|几号|"
                               r"比例|百分|压缩到|缩短到|减少到|提高到|数量|规模|金额")),
    ("what_measure", re.compile(r"做法|举措|措施|怎么|如何|采取|经验|具体|干了什么|做了什么|有什么|内容|机制|成效|效果")),
)


def detect_kind(question: str) -> str:
    """Simple, tested wording rules; no model is needed to tell these kinds apart."""
    for kind, pattern in KIND_RULES:
        if pattern.search(question):
            if kind == "comparison" and len(Filters.from_question(question).districts) < 2 \
                    and not re.search(r"对比|比较", question):
                continue
            return kind
    return "what_measure"


@dataclass(frozen=True)
class Citation:
    n: int
    district: str | None
    case_id: str
    case_title: str
    collection: str
    year: int
    source: str
    lines: tuple[int, int]
    quote: str
    section: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lines"] = list(self.lines)
        return d


@dataclass
class Answer:
    question: str
    answer: str
    answerable: bool
    districts: list[str] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    kind: str = ""
    related: list[dict] = field(default_factory=list)  # 可能相关: nearest cases when not answerable
    mode: str = "extractive"

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.answer, "answerable": self.answerable,
                "districts": self.districts, "citations": [c.to_dict() for c in self.citations],
                "kind": self.kind, "related": self.related, "mode": self.mode}


def district_label(case: Case) -> str:
    return case.district or NO_DISTRICT


def case_label(case: Case) -> str:
    return f"《{case.title}》（{case.collection}，{case.year}年）"


class Citations:
    """Numbers citations in order of first use; the same sentence is cited once."""

    def __init__(self):
        self.items: list[Citation] = []
        self._seen: dict[tuple[str, int, str], int] = {}

    def cite(self, chunk: Chunk, sent: Sentence) -> str:
        key = (chunk.case.source, sent.line, sent.text)
        if key not in self._seen:
            c = chunk.case
            self.items.append(Citation(len(self.items) + 1, c.district, c.id, c.title, c.collection,
                                       c.year, c.source, (sent.line, sent.line), sent.text,
                                       " > ".join(chunk.section)))
            self._seen[key] = len(self.items)
        return f"[{self._seen[key]}]"


class Answerer:
    """Composes extractive answers from a Retriever's hits."""

    def __init__(self, retriever: Retriever, min_dense: float = 0.80, min_coverage: float = 0.40,
                 list_sentence_coverage: float = 0.6):
        # Thresholds calibrated on the gold set's dev split (eval/gold.jsonl, split "dev").
        self.retriever = retriever
        self.min_dense = min_dense
        self.min_coverage = min_coverage
        self.list_sentence_coverage = list_sentence_coverage
        # Document frequencies come free with the BM25 matrix: one column per token.
        bm25, n = retriever.index.bm25, len(retriever.index.chunks)
        df = np.diff(bm25.scores["indptr"])
        self.idf = {t: math.log(1 + n / (1 + df[i])) for t, i in bm25.vocab_dict.items() if i < len(df)}
        self.by_case: dict[str, list[Chunk]] = {}
        for chunk in retriever.index.chunks:
            self.by_case.setdefault(chunk.case.id, []).append(chunk)

    # -- evidence -----------------------------------------------------------------------------
    def terms(self, question: str) -> dict[str, float]:
        """The question's content words, weighted by rarity; district names are filters, not terms."""
        tokens = self.retriever.index.tokenizer(question)
        named = set(Filters.from_question(question).districts)
        out = {}
        for t in tokens:
            # Bare numbers and stray Latin letters carry no topic ("<img src=x>", "1").
            if t in named or t.endswith("区") and len(t) <= 2 or re.fullmatch(r"20\d\d|年|年度|\d+|[a-z]{1,2}", t):
                continue
            out[t] = self.idf.get(t, 0.0)
        return out

    def coverage(self, terms: dict[str, float], text: str) -> float:
        total = sum(terms.values())
        if not total:
            return 0.0
        return sum(w for t, w in terms.items() if t in text.lower()) / total

    def best_sentences(self, hit: Hit, terms: dict[str, float], n: int = 2, prefer=None,
                       depth: int | None = 6) -> list[tuple[Chunk, Sentence]]:
        """The n sentences of the hit's best `depth` chunks (all with None) that cover the most
        question terms, in document order. Title lines are not evidence."""
        title = re.sub(r"\s+", "", hit.case.title)
        scored = []
        for rank, chunk in enumerate(hit.chunks[:depth]):
            for i, s in enumerate(chunk.sentences):
                if len(s.text) < 8 or re.sub(r"\s+", "", s.text) in title:
                    continue
                score = self.coverage(terms, s.text) - 0.02 * rank - 0.001 * i
                if prefer:
                    score += prefer(chunk, s)
                scored.append((score, chunk, s))
        scored.sort(key=lambda x: -x[0])
        picked, lines = [], set()
        for _, chunk, s in scored:
            if (s.line, s.text) in lines:
                continue
            picked.append((chunk, s))
            lines.add((s.line, s.text))
            if len(picked) == n:
                break
        return sorted(picked, key=lambda cs: (cs[1].line, cs[0].sentences.index(cs[1])))

    def supported(self, hit: Hit, terms: dict[str, float], kind: str) -> bool:
        """Enough of the question's rare words appear in the case. Lists and comparisons ask
        broadly, so they need less of it. (Cosine similarity alone barely separates answerable
        from unanswerable questions with this model: 0.87–0.94 for both.)"""
        text = "".join(c.index_text for c in hit.chunks[:4])
        need = self.min_coverage * (0.55 if kind in ("list_districts", "comparison") else 1.0)
        dense_ok = self.retriever.mode == "bm25" or hit.dense >= self.min_dense
        return dense_ok and self.coverage(terms, text) >= need

    # -- answers --------------------------------------------------------------------------------
    def answer(self, question: str, kind: str | None = None, filters: Filters | None = None,
               focus: str = "", exclude: tuple[str, ...] = ()) -> Answer:
        """`focus` is extra search context (a follow-up's earlier turn); `exclude` drops case ids
        ("后来有升级版吗？" asks for a case other than the one just shown)."""
        kind = kind or detect_kind(question)
        query = f"{focus} {question}".strip()
        implied = Filters.from_question(question) if self.retriever.steer else Filters()
        wanted = filters if filters is not None else implied
        k = 12 if kind == "list_districts" else 6
        hits = [h for h in self.retriever.search(query, k=k + len(exclude), filters=wanted)
                if h.case.id not in exclude][:k]
        # A follow-up's case is the one its context names, so support is judged on the whole
        # query; the sentences shown answer the follow-up's own words ("压缩到几天").
        context_terms = self.terms(query)
        terms = (self.terms(question) if focus and not exclude else context_terms) or context_terms

        reason = self.out_of_scope(question, wanted)
        in_filter = [h for h in hits if self.retriever.matches(h.case, wanted)]
        good = [h for h in in_filter if self.supported(h, context_terms, kind)]
        if reason or not good:
            return self.not_found(question, kind, hits, reason)
        compose = {"which_district": self.which_district, "list_districts": self.list_districts,
                   "fact_number": self.fact_number, "comparison": self.comparison}.get(kind, self.what_measure)
        return compose(question, kind, good, terms, wanted)

    def out_of_scope(self, question: str, filters: Filters) -> str:
        years = set().union(*self.retriever.case_years.values())
        if filters.years and not years & set(filters.years):
            collections = sorted({c.year for c in self.retriever.index.cases.values()})
            return f"现有材料是 {'、'.join(map(str, collections))} 年的案例，没有涉及 {filters.years[0]} 年的内容。"
        cities = [c for c in OTHER_CITIES if c in question]
        if cities:
            return f"现有材料只收录上海各区的案例，不涉及{cities[0]}。"
        asked = COLLECTION_YEAR.search(question)
        collections = {c.year for c in self.retriever.index.cases.values() if c.kind == "case_collection"}
        if asked and int(asked.group(1)) not in collections:
            return f"现有案例集是 {'、'.join(map(str, sorted(collections)))} 年的，没有 {asked.group(1)} 年的案例集。"
        return ""

    def not_found(self, question: str, kind: str, hits: list[Hit], reason: str = "") -> Answer:
        text = f"{NOT_FOUND}能回答这个问题的内容。" + (reason or "")
        related = [{"case_id": h.case.id, "district": district_label(h.case), "case_title": h.case.title,
                    "collection": h.case.collection, "year": h.case.year, "source": h.case.source,
                    "lines": list(h.case.lines)} for h in hits[:3]]
        return Answer(question, text, False, [], [], kind, related)

    def which_district(self, question, kind, hits, terms, filters) -> Answer:
        top = hits[0]
        cites = Citations()
        picked = self.best_sentences(top, terms, 2)
        lines = [f"{district_label(top.case)} —— {case_label(top.case)}",
                 "".join(s.text + cites.cite(c, s) for c, s in picked)]
        # The same programme often appears in two collections (2019 and 2021): show both.
        also = [h for h in hits[1:3] if h.case.district == top.case.district
                and self.coverage(terms, "".join(c.text for c in h.chunks[:3])) >= 0.8]
        for h in also:
            c, s = self.best_sentences(h, terms, 1)[0]
            lines.append(f"另见 {case_label(h.case)}：{s.text}{cites.cite(c, s)}")
        return self._answer(question, kind, lines, cites, [top] + also)

    def list_districts(self, question, kind, hits, terms, filters) -> Answer:
        # Recall first (12 candidates), then keep the cases where one sentence carries the
        # practice: a passing mention in a long case does not make it a match.
        best = {h.case.id: self.best_sentences(h, terms, 1) for h in hits}
        cover = {i: self.coverage(terms, b[0][1].text) if b else 0.0 for i, b in best.items()}
        # Long, descriptive questions rarely fit one sentence, so the bar is relative to the best.
        bar = self.list_sentence_coverage * max(cover.values())
        hits = [h for h in hits if cover[h.case.id] >= bar and cover[h.case.id] > 0] or hits[:1]
        cites = Citations()
        lines, kept = [f"共找到 {len({district_label(h.case) for h in hits})} 个区的相关案例："], []
        by_district: dict[str, list[Hit]] = {}
        for h in hits:
            by_district.setdefault(district_label(h.case), []).append(h)
        for district, group in by_district.items():
            parts = []
            for h in group:
                c, s = best[h.case.id][0]
                parts.append(f"{case_label(h.case)}：{s.text}{cites.cite(c, s)}")
                kept.append(h)
            lines.append(f"- **{district}**：" + "；".join(parts))
        return self._answer(question, kind, lines, cites, kept)

    def what_measure(self, question, kind, hits, terms, filters) -> Answer:
        top = hits[0]
        cites = Citations()
        lines = [f"{district_label(top.case)} —— {case_label(top.case)}"]
        wants_effect = bool(re.search(r"成效|效果|成果|取得", question))
        aspect = self.aspect(question, top.case)
        # A question about the whole case gets its headline sentences; one about an aspect
        # ("在审批上怎么改的") gets the sentences that speak of it, after the headlines or instead.
        heads = [] if wants_effect or aspect >= 0.4 else self.headline_sentences(top)[:6]
        lines += [f"{s.text}{cites.cite(c, s)}" for c, s in heads]  # they carry their own 1、/（一）
        if len(heads) < 2 or aspect >= 0.15:
            # Effects sit in their own section (三、工作成效), which the search may not have ranked.
            effects = [c for c in self.case_chunks(top.case) if any(re.search(r"成效|效果|成果", p) for p in c.section)]
            pool = Hit(top.case, top.score, top.dense, top.bm25, effects or self.case_chunks(top.case)) \
                if wants_effect else top
            shown = {s.text for _, s in heads}
            picked = [(c, s) for c, s in self.best_sentences(pool, terms, 5, depth=None if wants_effect else 6)
                      if s.text not in shown][:3 if len(heads) < 2 else 2]
            lines += [f"- {s.text}{cites.cite(c, s)}" for c, s in picked]
        return self._answer(question, kind, lines, cites, [top])

    def aspect(self, question: str, case: Case) -> float:
        """The share of the question's weight in words that are not the case's name or "what did they do"."""
        terms = self.terms(question)
        known = self.terms(f"{case.title} {case.district or ''} 做法 举措 措施 主要 哪些 具体 工作 怎么 如何 方面")
        rest = sum(w for t, w in terms.items() if t not in known and t not in case.title)
        return rest / sum(terms.values()) if terms and sum(terms.values()) else 0.0

    def case_chunks(self, case: Case) -> list[Chunk]:
        return self.by_case[case.id]

    def headline_sentences(self, hit: Hit) -> list[tuple[Chunk, Sentence]]:
        """The lead sentences of 主要做法's numbered items, in document order."""
        out = []
        for c in self.case_chunks(hit.case):
            if not any(re.search(r"做法|举措|主要|措施|功能", p) for p in c.section[:1]):
                continue
            for s in c.sentences:
                if s.heading and len(c.section) >= 2 and not re.fullmatch(r".{0,4}、?(主要做法|工作举措)", s.text):
                    out.append((c, s))
        return out

    def fact_number(self, question, kind, hits, terms, filters) -> Answer:
        top = next((h for h in hits[:3] if self.has_figure(question, h, terms)), None)
        if top is None:
            return self.not_found(question, kind, hits, "找到了相关案例，但材料中没有给出这个数字。")
        cites = Citations()
        has_number = lambda c, s: 0.5 if re.search(r"\d|[一二三四五六七八九十百千万]+[天个项家年月次%]", s.text) else 0.0
        picked = self.best_sentences(top, terms, 2, prefer=has_number)
        picked.sort(key=lambda cs: -has_number(*cs) - self.coverage(terms, cs[1].text))
        lines = [s.text + cites.cite(c, s) for c, s in picked[:1]]
        lines.append(f"出处：{district_label(top.case)} —— {case_label(top.case)}")
        lines += [s.text + cites.cite(c, s) for c, s in picked[1:]]
        return self._answer(question, kind, lines, cites, [top])

    def has_figure(self, question: str, hit: Hit, terms: dict[str, float]) -> bool:
        """A sentence that both speaks of the question's subject and gives a figure in its unit."""
        m = ASKED_UNIT.search(question)
        if not m:
            return True
        if m.group(3):
            pattern = re.compile("第" + NUMBER)
        elif m.group(1):
            pattern = re.compile(NUMBER + re.escape(m.group(1)))
        else:
            pattern = re.compile(NUMBER + "(?:万|亿)?元")
        # "多少家是餐饮店": the thing counted must be there too, not just any count of 家.
        counted = self.terms(re.split(r"[，。？?！!]", question[m.end():])[0])
        rarest = max(counted, key=counted.get) if counted else None
        return any(pattern.search(s.text) and self.coverage(terms, s.text) >= 0.3
                   and (rarest is None or rarest in s.text.lower())
                   for c in hit.chunks[:6] for s in c.sentences)

    def comparison(self, question, kind, hits, terms, filters) -> Answer:
        cites = Citations()
        sides: list[Hit] = []
        for d in filters.districts or ():
            side = next((h for h in hits if h.case.district == d), None)
            if side:
                sides.append(side)
        if len(sides) < 2:
            sides = hits[:2]
        lines = []
        for h in sides:
            picked = self.best_sentences(h, terms, 2)
            lines.append(f"**{district_label(h.case)}** —— {case_label(h.case)}：" +
                         "".join(s.text + cites.cite(c, s) for c, s in picked))
        return self._answer(question, kind, lines, cites, sides)

    def _answer(self, question, kind, lines, cites: Citations, hits: list[Hit]) -> Answer:
        districts = list(dict.fromkeys(h.case.district for h in hits if h.case.district))
        return Answer(question, "\n".join(lines), True, districts, cites.items, kind)


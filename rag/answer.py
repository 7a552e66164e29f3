"""Query + ranked cases → an Answer: source sentences, each with its citation, and a fitted verdict.

The default needs no LLM: every sentence shown is source text, quoted exactly, with the line it
stands on. Which sentences: those the sentence-level search ranks best for the question, with a
neighbour where a sentence needs its context; a case's headline sentences only when the question
asks about the whole case. Whether to answer at all, which cases belong in a list, and whether
the question's premise is wrong are small fitted models over measured evidence (rag.decide), not
rules on wording. Three outcomes: an answer, an answer marked as weak evidence, or not found with
the nearest cases as 可能相关.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache

import numpy as np

from rag.chunking import Chunk, Sentence
from rag.corpus import Case
from rag.decide import Decisions
from rag.question import INTERROGATIVE, NEXT, Query
from rag.retrieve import Evidence, Filters, Hit, Retriever

NO_DISTRICT = "（文中未注明所属区）"
NOT_FOUND = "现有案例材料中没有找到"
WEAK = "材料中最接近的内容是："
# A sentence that leans on the one before it ("同时，…", "该平台…") is shown with it.
LEANS = re.compile(r"^(同时|此外|另外|其中|并且|而且|对此|为此|据此|该|这|此|上述|以上|通过这)")
# The items of a series in one paragraph ("…主要从4个方面入手：一是组织专班…。二是跨前服务…"): a sentence
# that opens or continues one is shown with the other items' lead sentences.
SERIES = re.compile(r"(?:^|[：:])\s*(?:[一二三四五六七八九十]是|其[一二三四五六七八九十](?=[，,、是])|第[一二三四五六七八九十](?=[，,、是]))")
NUMBER = re.compile(r"\d|[一二两三四五六七八九十百千万]+[天个项家年月次%名户件笔条]")
FIGURE = r"(?:\d[\d.,，]*|[一二两三四五六七八九十百千万]+)\s*(?:多|余|近)?"
# How a text counts what a question counts in another measure word: "多少家企业" → "1.5万户".
# 个 is the general measure word: "多少个体验官" is answered in 位.
UNITS = {"天": ("天", "个工作日"), "工作日": ("个工作日", "工作日", "天"), "小时": ("小时", "个小时"),
         "家": ("家", "户"), "户": ("户", "家"), "人": ("人", "名", "位"), "名": ("名", "人", "位"),
         "个": ("个", "项", "处", "家", "座", "位", "名", "人", "户", "所", "张", "台", "条", "件", "幢", "栋", "笔", "间"),
         "项": ("项", "个", "条"), "次": ("次", "件"), "件": ("件", "次")}
# What a sentence holding each kind of fact looks like (rag.question.ASKS names the kinds).
SHAPES = {
    # A number: "开通了热线" does not say which one to call.
    "phone": re.compile(r"\d{3,4}-?\d{7,8}|\d{5,}"),
    "address": re.compile(r"[路街道]\d+号|\d+[楼层]|\d+号楼"),
    "date": re.compile(r"\d{4}年|\d+月(\d+日)?|[一二三四五六七八九十]+月"),
    # "封顶额度300万的补贴" leaves out 元; "3万户" counts households.
    "money": re.compile(r"\d[\d.,，]*\s*(万|亿)?元|\d[\d.,，]*\s*[万亿](?![户人家个项件名余多平次位条座笔])|资金|经费"),
    "percent": re.compile(r"%|％|百分之|成以上|\d+成"),
    "hours": re.compile(r"\d{1,2}[:：]\d{2}|\d{1,2}[点时](?!击)|全天|24小时|周[一二三四五六日末]|工作日"),
    "person": re.compile(r"(局长|主任|书记|区长|负责人|法官|律师|劳模)"),
    "area": re.compile(r"平方米|平方公里|平米|㎡|亩|公顷"),
    # An organisation by its name ("上海银行", "上海家化有限公司"), not a count of them ("12家银行").
    "names": re.compile(r"[\u4e00-\u9fffA-Za-z]*[^\W\d_家个些类所多各余批][\u4e00-\u9fff]?(?:有限公司|公司|集团|银行|医院|大学|研究院)"),
    "ordinal": re.compile(r"第[一二三四五六七八九十百\d]+[批期届轮版次]"),
}
# The parts of a case a question about its results or its method reads.
EFFECT_SECTION = re.compile(r"成效|效果|成果")
METHOD_SECTION = re.compile(r"做法|举措|主要|措施|功能")


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
    location: str = ""  # where a person finds it in the file they have: page and line, paragraph, line

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
    case_ids: list[str] = field(default_factory=list)  # the cases answered from, for the next turn
    evidence: str = "strong"  # "strong", "weak" or "none"
    confidence: float = 0.0  # the answerability model's probability
    correction: str = ""  # the premise the question got wrong, when it did
    # The evidence each decision saw, for `python -m eval.fit`; not part of the answer.
    trace: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.answer, "answerable": self.answerable,
                "districts": self.districts, "citations": [c.to_dict() for c in self.citations],
                "kind": self.kind, "related": self.related, "mode": self.mode, "case_ids": self.case_ids,
                "evidence": self.evidence, "confidence": round(self.confidence, 4),
                "correction": self.correction}


def counted_in(query: Query) -> str:
    """A pattern for the measure words a figure the question asks for may stand in ("" for none)."""
    units = dict.fromkeys(w for u in query.figures for w in UNITS.get(u, (u,)))
    return f"(?:{'|'.join(map(re.escape, units))})" if units else ""


def line_span(lines: tuple[int, int] | list[int]) -> str:
    a, b = lines
    return f"第{a}行" if a == b else f"第{a}–{b}行"


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


@dataclass
class Plan:
    """What to search and where, once the question and the dialogue are read."""

    text: str  # the search text
    kind: str
    filters: Filters
    exclude: tuple[str, ...] = ()  # case ids not to answer from ("还有别的吗")
    only: tuple[str, ...] = ()  # the case(s) a follow-up is about
    years: str = ""  # "earlier" / "later": relative to the case just shown
    shown_year: int = 0


class Answerer:
    """Composes extractive answers from a Retriever's ranking and fitted decisions."""

    def __init__(self, retriever: Retriever, decisions: Decisions | None = None):
        self.retriever = retriever
        self.decisions = decisions or Decisions.load()
        index = retriever.index
        # Document frequencies come free with the BM25 matrix: one column per token.
        bm25, n = index.bm25, len(index.chunks)
        df = np.diff(bm25.scores["indptr"])
        self.idf = {t: math.log(1 + n / (1 + df[i])) for t, i in bm25.vocab_dict.items() if i < len(df)}
        self.unknown_idf = math.log(1 + n)
        self.by_case = retriever.chunks_by_case
        self.case_text = {cid: "\n".join(c.text for c in chunks).lower() for cid, chunks in self.by_case.items()}
        self.case_sentences = {cid: list(dict.fromkeys(s.text.lower() for c in chunks for s in c.sentences))
                               for cid, chunks in self.by_case.items()}
        # "该中心位于铁岭路38号…": a sentence that leans on the one before it, read with it.
        self.case_reads = {cid: [prev + s if LEANS.match(s) else s for prev, s in zip(["", *sents], sents)]
                           for cid, sents in self.case_sentences.items()}
        self.collections = {c.year for c in index.cases.values() if c.kind == "case_collection"}
        self.titles = {c.id: re.sub(r"\s+", "", c.title) for c in index.cases.values()}
        # One search text is weighed for every candidate case and every sentence: tokenise it once.
        self.terms = lru_cache(maxsize=256)(self._terms)

    # -- evidence -----------------------------------------------------------------------------
    def _terms(self, text: str) -> dict[str, float]:
        """The text's content words weighted by rarity; a word the corpus never uses weighs most.
        District names are where, not what; bare numbers, stray letters and the words that ask carry no topic."""
        out = {}
        for t in self.retriever.tokens(text):
            if t.endswith("区") and len(t) <= 4 or re.fullmatch(r"20\d\d|年|年度|\d+|[a-z]{1,2}", t) or \
                    INTERROGATIVE.fullmatch(t):
                continue
            if re.fullmatch(r"[a-z'\-]+", t) and t not in self.idf:
                continue  # English words: the glossary added their Chinese beside them
            if t not in self.idf and not self.retriever.index.tokenizer.is_word(t):
                continue  # a seam of the search cut ("楼有", "这是"), not a word the question uses
            out[t] = self.idf.get(t, self.unknown_idf)
        return out

    @staticmethod
    def coverage(terms: dict[str, float], text: str) -> float:
        total = sum(terms.values())
        text = text.lower()
        return sum(w for t, w in terms.items() if t in text) / total if total else 0.0

    def features(self, query: Query, hit: Hit, top: Hit, text: str) -> dict[str, float]:
        """Measured evidence that `hit` answers the query; the decisions are fitted on these."""
        # The question's own search reads without its asides; the premise check passes its topic.
        terms = self.terms(query.focus if text == query.search else text)
        total = sum(terms.values()) or 1.0
        best = hit.sentences[:3]
        scores = self.retriever.scores(text)
        dense = scores.chunk_dense if scores.chunk_dense is not None else np.zeros(1)
        spread = float(dense.std()) or 1.0
        quoted = [q for q in query.quoted if len(q) >= 2]
        case_text = self.case_text[hit.case.id]
        local = self.local(terms, self.case_sentences[hit.case.id])
        return {
            "dense_chunk": hit.dense,
            "dense_sentence": max((e.dense for e in best), default=0.0),
            "dense_z": (hit.dense - float(dense.mean())) / spread,
            "coverage_sentence": max((self.coverage(terms, e.sentence.text) for e in best), default=0.0),
            "coverage_case": self.coverage(terms, case_text),
            "bm25_sentence": math.log1p(max((e.bm25 for e in best), default=0.0)),
            "relative": hit.score / top.score if top.score else 0.0,
            "quoted": (sum(q.lower() in case_text for q in quoted) / len(quoted)) if quoted else 1.0,
            "unknown": sum(w for t, w in terms.items() if t not in self.idf) / total,
            # The rarest thing asked that the case never mentions ("电话", "升级版", "奖金").
            "missing_rarest": max((w for t, w in terms.items() if t not in case_text), default=0.0) / self.unknown_idf,
            # The question asks for a figure, a phone number, a date…: how well the case's best
            # sentence that holds one carries what the question is about, against its best sentence.
            **self.slot(query, hit.case.id, terms),
            "terms": math.log1p(sum(terms.values())),
            # The question's particular words together in one place of the case, not each somewhere.
            "local_best": max((self.coverage(local, r) for r in self.case_reads[hit.case.id]), default=0.0),
            # A place outside Shanghai the question is about that the case never names: "深圳前海的商事登记
            # 确认制" is not Pudong's case, "香港投资者在香港的银行递材料" is.
            "elsewhere": (sum(p not in case_text for p in query.elsewhere) / len(query.elsewhere)) if query.elsewhere else 0.0,
            "english": float(query.language == "en"),
        }

    def stated_absent(self, query: Query, hits: list[Hit]) -> float:
        """"闵行区企业服务平台2.0版", "青浦区2022年处理了多少件": the share of the numbers the question
        states about its subject that none of the best cases mentions, so the detail asked about is
        in none of them. A comparison's two years may each be one case's."""
        def held(n: str) -> bool:
            return any(n in self.case_text[h.case.id] or n == str(h.case.year) or n in h.case.collection for h in hits)
        return sum(not held(n) for n in query.stated) / len(query.stated) if query.stated else 0.0

    @staticmethod
    def local(terms: dict[str, float], sentences: list[str]) -> dict[str, float]:
        """The terms weighed by how few of the sentences hold them: a case's own name is in every
        sentence, the detail asked about in one."""
        if not sentences:
            return terms
        return {t: w * (1 - sum(t in s for s in sentences) / len(sentences)) for t, w in terms.items()}

    def slot(self, query: Query, case_id: str, terms: dict[str, float]) -> dict[str, float]:
        if not (query.figures or query.asks):
            return {"slot_absent": 0.0, "slot_gap": 0.0, "rarest_apart": 0.0, "stated_apart": 0.0}
        units = counted_in(query)
        sentences = self.case_sentences[case_id]
        terms = {t: w for t, w in terms.items() if not any(t in a for a in query.asked_in)}
        local = self.local(terms, sentences)

        def holds(s: str) -> bool:
            return bool(units and re.search(FIGURE + units, s)) or \
                any(SHAPES[a].search(s) for a in query.asks)
        read = self.case_reads[case_id]
        best = max((self.coverage(local, r) for r in read), default=0.0)
        # The reads of the sentences that hold a fact of the shape asked for.
        held = [r for s, r in zip(sentences, read) if holds(s)]
        support = [self.coverage(local, r) for r in held]
        # "2020年一共服务了多少个项目": the year stated stands in the sentence that answers, unless it
        # is the year the document speaks from ("截至10月底" in the 2023 report).
        stated = [n.lower() for n in query.stated if n != str(self.retriever.index.cases[case_id].year)]
        # The question's most particular word the case uses ("湾区贷" of the case's many loans): the
        # detail asked of it stands beside it, not in a sentence about something else.
        present = [t for t in local if any(t in r for r in read)]
        rarest = max(present, key=lambda t: local[t], default="")
        return {"slot_absent": float(not support), "slot_gap": best - max(support, default=0.0),
                "rarest_apart": float(bool(rarest) and not any(rarest in r for r in held)),
                "stated_apart": float(bool(stated) and not any(all(n in r for n in stated) for r in held))}

    def sentence_features(self, query: Query, case: Case, text: str) -> list[tuple[dict[str, float], Evidence]]:
        """How well each sentence of the case answers the question; the sentence model is fitted on these.
        "local" is coverage of the question's words weighed by how few of the case's sentences hold them."""
        terms = self.terms(text)
        evidence = self.retriever.case_evidence(case.id, text)
        lowered = [e.sentence.text.lower() for e in evidence]
        local = self.local(terms, lowered)
        units = counted_in(query)
        how = query.kind == "what_measure" and not query.wants
        out = []
        for e, low in zip(evidence, lowered):
            s = e.sentence.text
            out.append(({"fused": e.score * 100, "dense": e.dense, "bm25": math.log1p(max(e.bm25, 0.0)),
                         "coverage": self.coverage(terms, low), "local": self.coverage(local, low),
                         "heading": float(e.sentence.heading),
                         "figure": float(bool(query.figures or query.kind == "fact_number") and bool(NUMBER.search(s))),
                         "unit": float(bool(units and re.search(FIGURE + units, s))),
                         "effect": float(query.wants == "effect" and any(EFFECT_SECTION.search(p) for p in e.chunk.section)),
                         # What they did is told under 主要做法; the lines before any section are the
                         # case's background, which restates the question's topic without answering it.
                         "method": float(how and any(METHOD_SECTION.search(p) for p in e.chunk.section[:1])),
                         "intro": float(how and not e.chunk.section),
                         "short": float(len(s) < 20)}, e))
        return out

    def ranked_sentences(self, query: Query, case: Case, text: str) -> list[tuple[float, Evidence]]:
        scored = [(self.decisions.sentence(x), e) for x, e in self.sentence_features(query, case, text)]
        return sorted(scored, key=lambda pe: -pe[0])

    def pick(self, query: Query, case: Case, text: str, n: int, where=None, in_order: bool = True,
             series: bool = False) -> list[Evidence]:
        """The case's n sentences that best answer `text` by the fitted sentence model, in document
        order (or best first); a sentence that leans on the one before it brings that one along.
        Title lines are not evidence."""
        chosen: list[Evidence] = []
        ranked = [e for _, e in self.ranked_sentences(query, case, text)]
        if where:
            ranked = [e for e in ranked if where(e)] or ranked
        for e in ranked:
            flat = re.sub(r"\s+", "", e.sentence.text)
            if len(flat) < 8 or flat in self.titles[case.id]:
                continue
            chosen.append(e)
            if len(chosen) == n:
                break
        out = []
        for e in chosen:
            before = self.neighbour(e)
            if before is not None and all(before.sentence != c.sentence for c in chosen + out):
                out.append(before)
            out.append(e)
        if series:
            # After the chosen ones: best first, a figure's sentence still leads.
            for e in chosen:
                out += [x for x in self.series(e) if all(x.sentence != c.sentence for c in out)]
        if not in_order:
            return out
        return sorted(out, key=lambda e: (e.sentence.line, e.chunk.id, e.chunk.sentences.index(e.sentence)))

    def series(self, e: Evidence) -> list[Evidence]:
        """The other items' lead sentences of a series on the sentence's line, which chunks may cut."""
        if not SERIES.search(e.sentence.text):
            return []
        return [Evidence(c, s, e.score, e.dense, e.bm25) for c in self.by_case[e.chunk.case.id] for s in c.sentences
                if s.line == e.sentence.line and s != e.sentence and SERIES.search(s.text)]

    def neighbour(self, e: Evidence) -> Evidence | None:
        i = e.chunk.sentences.index(e.sentence)
        if i == 0 or not (LEANS.match(e.sentence.text) or len(e.sentence.text) < 16):
            return None
        prev = e.chunk.sentences[i - 1]
        return Evidence(e.chunk, prev, e.score, e.dense, e.bm25)

    def headline_sentences(self, case: Case) -> list[Evidence]:
        """The lead sentences of 主要做法's numbered items, in document order."""
        out = []
        for c in self.by_case[case.id]:
            if not any(METHOD_SECTION.search(p) for p in c.section[:1]):
                continue
            for s in c.sentences:
                if s.heading and len(c.section) >= 2 and not re.fullmatch(r".{0,4}、?(主要做法|工作举措)", s.text):
                    out.append(Evidence(c, s, 0.0, 0.0, 0.0))
        return out

    def aspect(self, query: Query, case: Case, text: str) -> float:
        """The share of the question's weight in words that are not the case's name or "what did
        they do": high when it asks about one part of the case, low when about the whole."""
        terms = self.terms(text)
        known = self.terms(f"{case.title} {case.district or ''} 做法 举措 措施 主要 哪些 具体 工作 怎么 如何 方面 情况 介绍")
        rest = sum(w for t, w in terms.items() if t not in known and t not in case.title)
        return rest / sum(terms.values()) if terms and sum(terms.values()) else 0.0

    # -- reading the dialogue -------------------------------------------------------------------
    def shown_cases(self, query: Query) -> tuple[str, ...]:
        """The cases the last answer showed: its case ids, or the titles its first line names."""
        f = query.follow
        if f is None:
            return ()
        known = tuple(c for c in f.shown if c in self.retriever.index.cases)
        if known:
            return known
        named = tuple(c.id for c in self.retriever.index.cases.values() if c.title in f.last_answer)
        if named:
            return named
        # A history of free text: the case the previous question itself finds, in its district.
        previous = Filters.from_query(f.previous)
        ranked = self.retriever.rank(f.previous.search)
        return tuple(h.case.id for h in ranked if self.retriever.matches(h.case, previous))[:1] or \
            tuple(h.case.id for h in ranked[:1])

    def plan(self, query: Query, filters: Filters | None) -> Plan:
        explicit = filters is not None
        wanted = filters if explicit else (Filters.from_query(query) if self.retriever.steer else Filters())
        if not explicit and self.missing_collection(query.collection):
            # The year names a collection that does not exist: it cannot steer towards anything.
            wanted = Filters(wanted.districts)
        f = query.follow
        if f is None:
            return Plan(query.search, query.kind, wanted)
        shown = self.shown_cases(query)
        cases = self.retriever.index.cases
        if f.move == "swap_district":
            return Plan(query.search, query.kind, wanted)
        if f.move == "same_case" and shown:
            return Plan(query.search, query.kind, wanted if explicit else Filters(), only=shown[:1])
        if f.move == "other_districts":
            # "还有别的区也这么做吗": the same practice in other districts than the one just shown.
            districts = {cases[c].district for c in shown} - {None}
            others = tuple(c.id for c in cases.values() if c.id in shown or c.district in districts)
            return Plan(query.search, "list_districts", wanted if explicit else Filters(), exclude=others)
        if f.move in ("earlier", "later") and shown:
            district = cases[shown[0]].district
            own = Filters((district,)) if district and not query.districts else wanted
            return Plan(query.search, f.previous.kind if query.kind == "what_measure" else query.kind,
                        own, exclude=shown, years=f.move, shown_year=cases[shown[0]].year)
        return Plan(query.search, query.kind, wanted)

    # -- answers --------------------------------------------------------------------------------
    def answer(self, query: Query, filters: Filters | None = None) -> Answer:
        plan = self.plan(query, filters)
        if not self.terms(plan.text):
            # Not one word the corpus (or the English glossary) knows: nothing to match, only noise.
            return self.not_found(query, plan.kind, [])
        ranked = [h for h in self.retriever.rank(plan.text) if h.case.id not in plan.exclude]
        if plan.only:
            ranked = [h for h in ranked if h.case.id in plan.only] or \
                     [Hit(self.retriever.index.cases[c], 0.0, 0.0, 0.0) for c in plan.only]
        if plan.years:
            earlier = plan.years == "earlier"
            ranked.sort(key=lambda h: (h.case.year < plan.shown_year) != earlier)
        if not ranked:
            return self.not_found(query, plan.kind, [])
        top = ranked[0]
        missing = self.missing_collection(query.collection)
        in_filter = [h for h in ranked if self.retriever.matches(h.case, plan.filters)]
        best = in_filter[0] if in_filter else None

        correction, trace = "", {"plan": plan.text}
        if missing:
            correction = self.no_such_collection(query.collection)
            if query.collection == NEXT or not any(t in self.idf for t in self.terms(query.rest)):
                # "2024年度的优秀案例有哪些？" asks only about the collection that does not exist; words
                # the corpus never uses ("上榜啊，我看过了") ask about nothing it could answer; whatever
                # one asks of the next batch, no document holds it.
                return self.not_found(query, plan.kind, ranked, correction=correction)
        elif (query.claims or query.years) and not query.follow:
            # The question places the practice in a district or a year. Where the evidence for the
            # practice itself, searched without the place names that would pull towards the claim,
            # lies elsewhere, the premise may be wrong; the fitted model decides.
            unbiased = self.retriever.rank(query.topic)[0] if query.topic else top
            if not self.retriever.matches(unbiased.case, plan.filters) and (best is None or unbiased.case != best.case):
                trace["premise"] = self.premise_features(query, unbiased, best, query.topic)
                if self.decisions.premise(trace["premise"]) >= self.decisions.premise_threshold:
                    correction = self.correct(query, unbiased)
                    top = next((h for h in ranked if h.case == unbiased.case), unbiased)
                    best, in_filter = top, [top] + [h for h in ranked if h is not top]
        if best is None:
            return self.not_found(query, plan.kind, ranked)
        # The ranking the answer stands on, steered: what the eval scores as retrieval.
        trace["ranking"] = [h.case.id for h in in_filter[:10]] + \
                           [h.case.id for h in ranked if h not in in_filter][:max(0, 10 - len(in_filter))]

        trace["answerable"] = {**self.features(query, best, top, plan.text),
                               "stated_absent": self.stated_absent(query, in_filter[:3])}
        p = self.decisions.answerable(trace["answerable"])
        if p < self.decisions.answer_threshold and not plan.only:
            answer = self.not_found(query, plan.kind, ranked, p=p, correction=correction)
            answer.trace.update(trace)
            return answer
        kind = plan.kind
        compose = {"which_district": self.which_district, "list_districts": self.list_districts,
                   "fact_number": self.fact_number, "comparison": self.comparison}.get(kind, self.what_measure)
        answer = compose(query, plan, in_filter, ranked)
        shown = self.retriever.index.cases[answer.case_ids[0]] if answer.case_ids else None
        if not correction and query.claims and query.named and not query.follow and shown and \
                shown.district and shown.district not in query.named:
            # The question names the district it places the practice in, and the case the answer
            # stands on is another district's: say so first, whatever else the question implied.
            correction = self.correct(replace(query, districts=query.named), Hit(shown, 0.0, 0.0, 0.0))
            trace["premise_from"] = "cited case"
        answer.trace.update(trace)
        answer.confidence = p
        if p < 0.5 and not plan.only:
            answer.evidence = "weak"
            answer.answer = f"{WEAK}\n{answer.answer}"
        if correction:
            answer.correction = correction
            answer.answer = f"{correction}\n{answer.answer}"
        return answer

    def missing_collection(self, name: str) -> bool:
        if not name:
            return False
        if name.isdigit():
            return int(name) not in self.collections
        if name == NEXT:
            return True
        if name.startswith("第"):
            # The series has one numbered batch: 第一批 (2019).
            return name != "第一批"
        return False

    def no_such_collection(self, name: str) -> str:
        years = "、".join(map(str, sorted(self.collections)))
        label = f"{name}年的案例集" if name.isdigit() else f"“{name}”案例"
        return f"注意：现有材料中没有{label}（现有案例集为 {years} 年）。下面是最接近的真实案例。"

    def premise_features(self, query: Query, top: Hit, best: Hit | None, text: str) -> dict[str, float]:
        ft = self.features(query, top, top, text)
        fb = self.features(query, best, top, text) if best else dict.fromkeys(ft, 0.0)
        # The programme's own words ("生命树", "一网畅融"), quoted or not: the rarest of them that the
        # case found outside the claim holds and the claimed district's best case does not.
        terms = self.terms(text)
        outside, inside = self.case_text[top.case.id], self.case_text[best.case.id] if best else ""
        only_outside = [w for t, w in terms.items() if t in outside and t not in inside]
        return {"in_claim": float(best is not None),
                # A word of the question that one case alone in the corpus uses, and it is the one
                # outside the claim: "无科层" is Fengxian's, whoever the question credits with it.
                "unique_outside": float(any(len(t) >= 2 and t in outside and t not in inside and
                                            sum(t in c for c in self.case_text.values()) == 1 for t in terms)),
                "relative_in_claim": fb["relative"],
                "quoted_gap": ft["quoted"] - fb["quoted"],
                "coverage_gap": ft["coverage_sentence"] - fb["coverage_sentence"],
                "case_gap": ft["coverage_case"] - fb["coverage_case"],
                "rarest_outside": max(only_outside, default=0.0) / self.unknown_idf,
                "dense_gap": ft["dense_sentence"] - fb["dense_sentence"],
                "has_quoted": float(bool(query.quoted))}

    def correct(self, query: Query, top: Hit) -> str:
        c = top.case
        name = f"“{query.quoted[0]}”" if query.quoted else f"《{c.title}》"
        if query.districts and c.district not in query.districts:
            wrong = "、".join(query.districts)
        else:
            wrong = "、".join(f"{y}年" for y in query.years) + "的案例"
        return f"更正：{name}是{district_label(c)}的做法（{c.collection}，{c.year}年），不是{wrong}。"

    def not_found(self, query: Query, kind: str, hits: list[Hit], p: float = 0.0, correction: str = "") -> Answer:
        where = ""
        if query.elsewhere:
            where = f"现有材料只收录上海各区的案例，不涉及{query.elsewhere[0]}。"
        elif correction:
            where = correction.split("。")[0].removeprefix("注意：") + "。"
        text = f"{NOT_FOUND}能回答这个问题的内容。" + where
        related = [{"case_id": h.case.id, "district": district_label(h.case), "case_title": h.case.title,
                    "collection": h.case.collection, "year": h.case.year, "source": h.case.source,
                    "lines": list(h.case.lines)} for h in hits[:3]]
        return Answer(query.raw, text, False, [], [], kind, related, evidence="none", confidence=p,
                      correction=correction)

    def which_district(self, query, plan, hits, ranked) -> Answer:
        top = hits[0]
        cites = Citations()
        picked = self.pick(query, top.case, plan.text, 2)
        lines = [f"{district_label(top.case)} —— {case_label(top.case)}",
                 "".join(e.sentence.text + cites.cite(e.chunk, e.sentence) for e in picked)]
        # The same programme often appears in two collections (2019 and 2021): show both.
        also = [h for h in hits[1:3] if h.case.district == top.case.district and top.case.district
                and self.decisions.member(self.features(query, h, top, plan.text)) >= self.decisions.member_threshold]
        for h in also:
            e = self.pick(query, h.case, plan.text, 1)[-1]
            lines.append(f"另见 {case_label(h.case)}：{e.sentence.text}{cites.cite(e.chunk, e.sentence)}")
        return self._answer(query, plan.kind, lines, cites, [top] + also)

    def list_districts(self, query, plan, hits, ranked) -> Answer:
        # Every case with evidence is a candidate; the fitted membership decision keeps those
        # whose own sentences carry the practice, not the ones that merely sit near it.
        top = hits[0]
        members = {h.case.id: self.features(query, h, top, plan.text) for h in hits}
        kept = [h for h in hits if self.decisions.member(members[h.case.id]) >= self.decisions.member_threshold] or [top]
        cites = Citations()
        by_district: dict[str, list[Hit]] = {}
        for h in kept:
            by_district.setdefault(district_label(h.case), []).append(h)
        lines = [f"共找到 {len(by_district)} 个区的相关案例："]
        for district, group in by_district.items():
            parts = []
            for h in group:
                e = self.pick(query, h.case, plan.text, 1)[-1]
                parts.append(f"{case_label(h.case)}：{e.sentence.text}{cites.cite(e.chunk, e.sentence)}")
            lines.append(f"- {district}：" + "；".join(parts))
        answer = self._answer(query, plan.kind, lines, cites, kept)
        answer.trace["members"] = members
        return answer

    def what_measure(self, query, plan, hits, ranked) -> Answer:
        top = hits[0]
        cites = Citations()
        lines = [f"{district_label(top.case)} —— {case_label(top.case)}"]
        if query.wants == "year":
            lines[0] += f"：入选{top.case.collection}（{top.case.year}年）"
        if query.wants == "effect":
            picked = self.pick(query, top.case, plan.text, 3, where=lambda e: any(EFFECT_SECTION.search(p) for p in e.chunk.section))
        elif query.language == "zh" and self.aspect(query, top.case, query.text) < 0.4 and not query.follow:
            # A question about the whole case: its headline sentences, then the best detail. The
            # aspect is weighed in Chinese words: an English question's words for it ("response-time
            # pledges", "risk reserve") mostly have no glossary entry, so every English question
            # would read as one about the whole case; its best sentences answer it instead. The
            # bound barely matters to the keywords shown (any from 0 to 0.5 on train); without
            # headlines, a question about the whole case would get background sentences.
            heads = self.headline_sentences(top.case)[:6]
            lines += [f"{e.sentence.text}{cites.cite(e.chunk, e.sentence)}" for e in heads]
            shown = {e.sentence for e in heads}
            picked = [e for e in self.pick(query, top.case, plan.text, 3) if e.sentence not in shown][:2 if heads else 3]
        else:
            picked = self.pick(query, top.case, plan.text, 4, series=True)
        lines += [f"- {e.sentence.text}{cites.cite(e.chunk, e.sentence)}" for e in picked]
        return self._answer(query, plan.kind, lines, cites, [top])

    def fact_number(self, query, plan, hits, ranked) -> Answer:
        top = hits[0]
        cites = Citations()
        if query.wants == "year" and not query.figures:
            return self.what_measure(query, plan, hits, ranked)
        # Figures first: of the best sentences, those that hold a number lead.
        # Best first: the sentence that holds the figure leads.
        picked = self.pick(query, top.case, plan.text, 3, in_order=False, series=True)
        lead, rest = picked[:1], picked[1:]
        lines = [e.sentence.text + cites.cite(e.chunk, e.sentence) for e in lead]
        lines.append(f"出处：{district_label(top.case)} —— {case_label(top.case)}")
        lines += [e.sentence.text + cites.cite(e.chunk, e.sentence) for e in rest]
        return self._answer(query, plan.kind, lines, cites, [top])

    def comparison(self, query, plan, hits, ranked) -> Answer:
        cites = Citations()
        sides: list[Hit] = []
        for d in query.districts:
            side = next((h for h in ranked if h.case.district == d), None)
            if side and side not in sides:
                sides.append(side)
        for h in ranked:
            if len(sides) >= 2:
                break
            if h not in sides:
                sides.append(h)
        lines = []
        for h in sides:
            picked = self.pick(query, h.case, plan.text, 2)
            lines.append(f"{district_label(h.case)} —— {case_label(h.case)}：" +
                         "".join(e.sentence.text + cites.cite(e.chunk, e.sentence) for e in picked))
        return self._answer(query, plan.kind, lines, cites, sides)

    def _answer(self, query: Query, kind: str, lines: list[str], cites: Citations, hits: list[Hit]) -> Answer:
        districts = list(dict.fromkeys(h.case.district for h in hits if h.case.district))
        return Answer(query.raw, "\n".join(lines), True, districts, cites.items, kind,
                      case_ids=[h.case.id for h in hits])

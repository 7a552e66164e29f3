"""Seeds → Case records.

Every case knows its district (or that the text never states one), its title, and the true
1-based line span in its seed file, so that any sentence can be cited back to the source.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from difflib import SequenceMatcher
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from rag.documents import CN_NUM, HEADING_LEVELS, heading_level, place

# Word's bookmark residue. It only ever prefixes a line, so stripping it keeps every
# remaining sentence an exact substring of the source line.
ARTEFACT = re.compile(r"\[bookmark: [^\]]*\]")

DISTRICTS = (
    "浦东新区", "黄浦区", "徐汇区", "长宁区", "静安区", "普陀区", "虹口区", "杨浦区",
    "闵行区", "宝山区", "嘉定区", "金山区", "松江区", "青浦区", "奉贤区", "崇明区",
)

# Short forms and places that belong to exactly one district. Order does not matter; the
# district with the most mentions in an entry wins.
GAZETTEER = {
    **{d[:2]: d for d in DISTRICTS},
    "临港新片区": "浦东新区", "临港": "浦东新区", "张江": "浦东新区", "陆家嘴": "浦东新区",
    "漕河泾": "徐汇区", "虹梅街道": "徐汇区", "徐家汇": "徐汇区",
    "北外滩": "虹口区",
    "紫竹": "闵行区", "大零号湾": "闵行区", "虹桥前湾": "闵行区", "闵址汇": "闵行区", "闵闵": "闵行区",
    "市北高新": "静安区", "大宁": "静安区", "南京西路": "静安区",
    "大创智": "杨浦区", "五角场": "杨浦区",
    "长风": "普陀区", "江苏路街道": "长宁区", "真新街道": "嘉定区", "淞南镇": "宝山区",
    "上海湾区": "金山区", "碳谷绿湾": "金山区", "花博": "崇明区",
}
# "浦东新区：" before a numbered title's words: a label naming its district, not part of the title.
DISTRICT_LABEL = re.compile(rf"({'|'.join(DISTRICTS)})\s*[：:]\s*")
# Words that contain a short form but do not name the district.
NOT_A_PLACE = ("黄浦江",)



@dataclass(frozen=True)
class Section:
    path: tuple[str, ...]  # heading path, outermost first
    lines: tuple[int, int]


@dataclass(frozen=True)
class Case:
    id: str
    district: str | None
    title: str
    collection: str
    year: int
    kind: str
    source: str
    lines: tuple[int, int]
    rank: int | None = None
    section: str | None = None  # the list a ranked entry belongs to (2022: 优秀案例 / 良好实践)
    district_evidence: str = ""
    duplicates: tuple[tuple[int, int], ...] = ()
    sections: tuple[Section, ...] = field(default=(), repr=False)
    document: str = ""  # the id of the document it comes from: what an ingest adds, replaces or removes

    def to_dict(self) -> dict:
        return {
            "id": self.id, "district": self.district, "title": self.title,
            "collection": self.collection, "year": self.year, "kind": self.kind,
            "source": self.source, "lines": list(self.lines), "rank": self.rank,
            "section": self.section, "district_evidence": self.district_evidence,
            "duplicates": [list(d) for d in self.duplicates],
            "sections": [{"path": list(s.path), "lines": list(s.lines)} for s in self.sections],
            "document": self.document,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        return cls(
            id=d["id"], district=d["district"], title=d["title"], collection=d["collection"],
            year=d["year"], kind=d["kind"], source=d["source"], lines=tuple(d["lines"]),
            rank=d["rank"], section=d["section"], district_evidence=d["district_evidence"],
            duplicates=tuple(tuple(x) for x in d["duplicates"]),
            sections=tuple(Section(tuple(s["path"]), tuple(s["lines"])) for s in d["sections"]),
            document=d.get("document", ""),
        )


def read_lines(path: Path) -> tuple[str, ...]:
    """The file's lines, without line ends; index i holds line i+1. Cached by the file's identity
    and time: an ingest replaces a document under the same name in a process that keeps running."""
    st = path.stat()
    return _read_lines(path, st.st_ino, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=512)
def _read_lines(path: Path, *identity) -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8").splitlines())


def clean(line: str) -> str:
    return ARTEFACT.sub("", line).strip()


# The seeds' case titles run to 36 characters; a line past 40, or one that ends a sentence, is a
# paragraph.
TITLE_CHARS = 40


def title_like(text: str) -> bool:
    return len(text) <= TITLE_CHARS and not text.endswith("。")


def heading_title(text: str) -> str:
    """A heading line's own words: a numbered paragraph's lead sentence, not the paragraph."""
    lead = re.split(r"(?<=[。！？；])", text, maxsplit=1)[0]
    return lead if len(lead) <= TITLE_CHARS else lead[:TITLE_CHARS] + "…"


MAX_DOCUMENT_BYTES = 5_000_000


class CorpusError(ValueError):
    """A seeds folder that cannot be read safely; the message says which document and why."""


def load_manifest(seeds: Path) -> dict:
    try:
        return json.loads((seeds / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorpusError(f"无法读取 {seeds / 'manifest.json'}：{e}") from e


def document_path(seeds: Path, name: str) -> Path:
    """A document named in the manifest: a plain file name inside seeds/, text, of sane size."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise CorpusError(f"文档名不合法（只能是 seeds/ 中的文件名，不能含路径）：{name!r}")
    path = seeds / name
    if path.is_symlink() or not path.is_file():
        raise CorpusError(f"找不到文档，或它不是普通文件：{path}")
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise CorpusError(f"文档过大（{path.stat().st_size} 字节，上限 {MAX_DOCUMENT_BYTES}）：{path}")
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"文档不是 UTF-8 文本：{path}（{e}）") from e
    return path


def load_cases(seeds: Path) -> list[Case]:
    manifest = load_manifest(seeds)
    parsers = {"districts_after_title": _parse_titled, "numbered_titles": _parse_titled, "toc": _parse_2021,
               "ranked": _parse_2022, "document": _parse_document}
    cases: list[Case] = []
    for doc in manifest["documents"]:
        if doc.get("layout") not in parsers:
            raise CorpusError(f"{doc.get('file')}：未知的版式 {doc.get('layout')!r}，可选 {sorted(parsers)}")
        lines = read_lines(document_path(seeds, doc["file"]))
        cases += parsers[doc["layout"]](doc, lines)
    return cases


def _span_end(lines, start: int, stop: int) -> int:
    """Last non-blank line number in [start, stop), 1-based."""
    end = stop - 1
    while end > start and not clean(lines[end - 1]):
        end -= 1
    return end


def _sections(lines, first: int, last: int, styled: dict | None = None) -> tuple[Section, ...]:
    """Heading paths with their spans: a heading runs until the next one at its level or above.
    Headings are found by their numbering; `styled` adds those a file marks by style, font size or
    bookmark ({line: level}, from rag.documents), where the numbering says nothing."""
    open_: list[tuple[int, str, int]] = []  # (level, title, start line)
    done: list[Section] = []

    def close(until_level: int, at: int):
        while open_ and open_[-1][0] >= until_level:
            level, _, start = open_[-1]
            path = tuple(t for _, t, _ in open_)
            done.append(Section(path, (start, _span_end(lines, start, at))))
            open_.pop()

    for n in range(first, last + 1):
        text = clean(lines[n - 1])
        level = (heading_level(text) or (styled or {}).get(str(n))) if text else None
        if level:
            close(level, n)
            open_.append((level, heading_title(text), n))
    close(1, last + 1)
    return tuple(sorted(done, key=lambda s: (s.lines[0], len(s.path))))


def _case(doc: dict, lines, id_: str, start: int, stop: int, **fields) -> Case:
    end = _span_end(lines, start, stop)
    return Case(id=id_, collection=doc["title"], year=doc["year"], kind=doc["kind"],
                source=doc["file"], document=doc["id"], lines=(start, end), sections=_sections(lines, start, end, doc.get("headings")),
                **fields)


@dataclass(frozen=True)
class Title:
    """Where a case starts, with the district its title gives and how."""
    line: int
    title: str
    district: str
    evidence: str


def _parse_titled(doc, lines) -> list[Case]:
    """Each case starts at its title, which carries its district: 2019's title, then a line that is
    just the district; or a numbered title at the level doc["numbering"] names."""
    text = [clean(x) for x in lines]
    titles = _numbered_titles(text, doc["numbering"]) if "numbering" in doc else [
        Title(n, text[n - 1], text[n], f"第{n + 1}行：{text[n]}") for n in range(1, len(text)) if text[n] in DISTRICTS]
    cases = []
    for i, t in enumerate(titles):
        stop = titles[i + 1].line if i + 1 < len(titles) else len(lines) + 1
        cases.append(_case(doc, lines, f"{doc['id']}-{i + 1:02d}", t.line, stop,
                           district=t.district, title=t.title, district_evidence=t.evidence))
    return cases


def _numbered_titles(text: list[str], level: int) -> list[Title]:
    """The short lines numbered at `level` ("一、浦东新区：…", "（三）…", "2. 张江…") that name a district,
    in their words through the gazetteer or on the line after them; a "浦东新区：" before the
    words labels the title and is not part of it."""
    pattern = HEADING_LEVELS[level - 1][1]
    titles = []
    for n, line in enumerate(text, 1):
        if heading_level(line) != level or not title_like(line):
            continue
        words = pattern.sub("", line, count=1).strip() or line
        after = next((k for k in range(n + 1, len(text) + 1) if text[k - 1]), None)
        if label := DISTRICT_LABEL.match(words):
            titles.append(Title(n, words[label.end():], label.group(1), f"第{n}行标题：{label.group(1)}"))
        elif after and text[after - 1] in DISTRICTS:
            titles.append(Title(n, words, text[after - 1], f"第{after}行：{text[after - 1]}"))
        elif (found := _infer_district(words))[0]:
            titles.append(Title(n, words, found[0], f"第{n}行标题：{found[1]}"))
    return titles


def _parse_2021(doc, lines) -> list[Case]:
    """案例一…案例二十; districts and titles come from the table of contents."""
    toc_district, toc = None, {}
    body: list[tuple[str, int]] = []
    for n, raw in enumerate(lines, 1):
        text = clean(raw)
        if m := re.fullmatch(rf"[{CN_NUM}]+、\s*(\S+区)", text):
            toc_district = m.group(1)
        elif m := re.fullmatch(r"(案例[一二三四五六七八九十]+)\s+(.+)", text):
            toc[m.group(1)] = (toc_district, m.group(2), n)
        elif re.fullmatch(r"案例[一二三四五六七八九十]+", text):
            body.append((text, n))
    # The 2021 collection ends with a line of links ("更多精彩…"); another may just end.
    end_of_cases = next((n for n, raw in enumerate(lines, 1) if clean(raw).startswith("更多精彩")), len(lines) + 1)
    cases = []
    for i, (label, n) in enumerate(body):
        stop = body[i + 1][1] if i + 1 < len(body) else end_of_cases
        district, title, toc_line = toc[label]
        cases.append(_case(doc, lines, f"{doc['id']}-{i + 1:02d}", n, stop, district=district,
                           title=title, rank=i + 1,
                           district_evidence=f"目录第{toc_line}行：{label}属“{district}”"))
    return cases


def place_mentions(text: str) -> list[tuple[int, str, str]]:
    """(position, word, district) for every district name, short form or known place in the text."""
    for word in NOT_A_PLACE:
        text = text.replace(word, "＿" * len(word))
    found = []
    # Longest names first, each masked once matched, so 浦东新区 does not count again as 浦东.
    for word in sorted(set(DISTRICTS) | set(GAZETTEER), key=len, reverse=True):
        for m in re.finditer(re.escape(word), text):
            found.append((m.start(), word, word if word in DISTRICTS else GAZETTEER[word]))
        text = text.replace(word, "＿" * len(word))
    return sorted(found)


def districts_in(text: str) -> list[str]:
    """The districts a text refers to, in order of first mention."""
    return list(dict.fromkeys(d for _, _, d in place_mentions(text)))


def _infer_district(text: str) -> tuple[str | None, str]:
    """The district an entry belongs to, from the names and places it mentions, with evidence."""
    mentions = place_mentions(text)
    if not mentions:
        return None, "文中未出现任何区名或可归属某区的地名"
    votes = Counter(d for _, _, d in mentions)
    # Most mentions wins; a tie goes to the district mentioned first.
    district = max(votes, key=lambda d: (votes[d], -next(p for p, _, x in mentions if x == d)))
    pos, word, _ = next(m for m in mentions if m[2] == district)
    context = text[max(0, pos - 12): pos + len(word) + 12].replace("\n", " ")
    others = {d: c for d, c in votes.items() if d != district}
    note = f"；另见{dict(others)}" if others else ""
    return district, f"“{word}”→{district}（{votes[district]}处）：…{context}…{note}"


def _parse_2022(doc, lines) -> list[Case]:
    """Entries start at 排名N; a second list heading restarts the ranks. Districts are inferred."""
    starts, list_of = [], {}
    current_list = clean(lines[0])
    for n, raw in enumerate(lines, 1):
        text = clean(raw)
        if text in doc["lists"]:
            current_list = text
        elif re.fullmatch(r"排名\d+", text):
            starts.append(n)
            list_of[n] = current_list
    cases: list[Case] = []
    seen: dict[str, int] = {}
    # 2022's two lists: e(xcellent) 优秀案例 and g(ood) 良好实践; lists beyond two are numbered.
    prefix = {name: "eg"[i] if i < 2 else f"l{i + 1}-" for i, name in enumerate(doc["lists"])}
    numbers = Counter()
    for i, n in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(lines) + 1
        stop = _list_heading_before(lines, n, stop, doc["lists"])
        end = _span_end(lines, n, stop)
        text = "\n".join(clean(lines[k - 1]) for k in range(n + 1, end + 1))
        key = re.sub(r"\s+", "", text)
        if key in seen:  # printed twice word for word: one case, the copy's lines recorded
            j = seen[key]
            cases[j] = _with_duplicate(cases[j], (n, end))
            continue
        seen[key] = len(cases)
        title_lines = []
        for k in range(n + 1, end + 1):
            t = clean(lines[k - 1])
            if not t:
                continue
            if heading_level(t) or not title_like(t):
                break
            title_lines.append(t)
        district, evidence = _infer_district(text)
        p = prefix[list_of[n]]
        numbers[p] += 1
        cases.append(_case(doc, lines, f"{doc['id']}-{p}{numbers[p]:02d}", n, stop,
                           district=district, title=" ".join(title_lines),
                           rank=int(clean(lines[n - 1])[2:]), section=list_of[n],
                           district_evidence=evidence))
    return cases


def _list_heading_before(lines, start: int, stop: int, lists) -> int:
    for k in range(start + 1, stop):
        if clean(lines[k - 1]) in lists:
            return k
    return stop


def _with_duplicate(case: Case, span: tuple[int, int]) -> Case:
    return replace(case, duplicates=case.duplicates + (span,))


def _parse_document(doc, lines) -> list[Case]:
    """A whole document is one case; its numbered sections are the citation units."""
    start = next(n for n, raw in enumerate(lines, 1) if clean(raw) and doc["title_line"] <= n)
    return [_case(doc, lines, doc["id"], start, len(lines) + 1, district=doc["district"],
                  title=clean(lines[start - 1]),
                  district_evidence=doc.get("district_evidence") or f"文件本身：{doc['title']}")]


# -- a new document's description, read from its lines -------------------------------------------
LAYOUT_MIN_ENTRIES = 2  # one 排名1 or one district line is a coincidence; two are a layout


def describe(id_: str, name: str, lines: list[str], title: str | None = None) -> dict:
    """The manifest entry of a document no one has described: its layout found from the shapes
    the seeds show (排名N entries, 案例一 with a table of contents, a title then its district's
    name, numbered titles that name their districts), else one document that is one case of the
    district it names. The title comes from the file's metadata or its first line; the year from
    the title, else the first date in the text."""
    text = [clean(x) for x in lines]
    first = next((n for n, t in enumerate(text, 1) if t), 1)
    title = (title or text[first - 1]).strip()
    # The line that reads most like the title (a file's metadata title may be worded a little apart).
    title_line = max(range(first, min(len(text), first + 20) + 1),
                     key=lambda n: (SequenceMatcher(None, text[n - 1], title).ratio(), -n))
    years = re.findall(r"(20\d\d)\s*年|〔(20\d\d)〕", title) or re.findall(r"(20\d\d)\s*年|〔(20\d\d)〕", "\n".join(text))
    entry = {"file": name, "id": id_, "title": title, "year": int("".join(years[0])) if years else None,
             "issuer": _issuer(text), "kind": "case_collection"}
    ranks = [n for n, t in enumerate(text, 1) if re.fullmatch(r"排名\d+", t)]
    toc_body = [t for t in text if re.fullmatch(rf"案例[{CN_NUM}]+", t)]
    district_lines = [n for n, t in enumerate(text[1:], 2) if t in DISTRICTS and text[n - 2]]
    if len(ranks) >= LAYOUT_MIN_ENTRIES:
        # Each list is headed by a short line just before its 排名1 (a long one is an entry's last
        # paragraph: the list goes on, as where 2022 prints an entry twice).
        heads = [t for n in ranks if text[n - 1] == "排名1" and n > 1
                 for t in [next(t for t in reversed(text[:n - 1]) if t)] if title_like(t)]
        return entry | {"layout": "ranked", "lists": list(dict.fromkeys(heads)) or [title]}
    if len(toc_body) >= LAYOUT_MIN_ENTRIES:
        return entry | {"layout": "toc"}
    if len(district_lines) >= LAYOUT_MIN_ENTRIES:
        return entry | {"layout": "districts_after_title"}
    if numbering := _case_numbering(text):
        return entry | {"layout": "numbered_titles", "numbering": numbering}
    district, evidence = _infer_district(title)
    if district:
        evidence = f"文件标题：{evidence}"
    else:
        district, evidence = _infer_district("\n".join(text))
    kind = "action_plan" if "方案" in title else "report" if "报告" in title else "document"
    return entry | {"layout": "document", "kind": kind, "district": district, "title_line": title_line,
                    "district_evidence": evidence}


def _case_numbering(text: list[str]) -> int | None:
    """The heading level whose numbered titles head a collection's cases, if one does. A plan or a
    report numbers its sections the same way (一、/（一）/1.), but few of its titles name a district,
    and those that do name one; so most titles at the level must carry a district, at least
    LAYOUT_MIN_ENTRIES, and two districts or more. Of several such levels, the one with most cases."""
    found = {}
    for level in range(1, len(HEADING_LEVELS) + 1):
        titles = _numbered_titles(text, level)
        numbered = sum(1 for t in text if heading_level(t) == level and title_like(t))
        if len(titles) >= LAYOUT_MIN_ENTRIES and len({t.district for t in titles}) >= 2 and 2 * len(titles) > numbered:
            found[level] = len(titles)
    return max(found, key=lambda level: (found[level], -level)) if found else None


def _issuer(text: list[str]) -> str | None:
    """An issuing body named on a line of its own near the start or the end of the document."""
    for t in text[:10] + text[-10:][::-1]:
        if m := re.fullmatch(r"(上海市\S{0,20}?(委员会|人民政府|办公室|局))(文件)?", t.replace(" ", "")):
            return m.group(1)
    return None


def _places(path: Path) -> tuple[dict, ...]:
    try:
        st = path.stat()
    except OSError:
        return ()
    return _places_at(path, st.st_ino, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _places_at(path: Path, *identity) -> tuple[dict, ...]:
    try:
        return tuple(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return ()


def where_file(text_file: str) -> str:
    """The file beside an ingested document's text that holds each line's place in the original."""
    return Path(text_file).stem + ".where.json"


def location(seeds: Path, source: str, line: int) -> str:
    """Where a line can be found by a person: the original file and its page and line, paragraph
    and heading path, or line; a document stored as it came (the seeds) by its own line."""
    entry = next((d for d in load_manifest_cached(seeds) if d.get("file") == source), {})
    places = _places(seeds / where_file(source)) if entry.get("original") else ()
    if 0 < line <= len(places):
        return f"{entry['original']} {place(places[line - 1])}"
    return f"seeds/{source} 第{line}行"


def load_manifest_cached(seeds: Path) -> tuple[dict, ...]:
    path = seeds / "manifest.json"
    try:
        st = path.stat()
        return _manifest_at(path, st.st_ino, st.st_mtime_ns)
    except OSError:
        return ()


@lru_cache(maxsize=8)
def _manifest_at(path: Path, *identity) -> tuple[dict, ...]:
    return tuple(json.loads(path.read_text(encoding="utf-8")).get("documents", ()))


def case_lines(case: Case, seeds: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for every line of the case's span, artefacts removed."""
    lines = read_lines(seeds / case.source)
    for n in range(case.lines[0], case.lines[1] + 1):
        yield n, clean(lines[n - 1])


def case_text(case: Case, seeds: Path) -> str:
    """The case's source lines, artefacts removed, one line per line."""
    return "\n".join(text for _, text in case_lines(case, seeds))

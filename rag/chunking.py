"""Cases → Chunk records: sentences packed within one section, never across a case.

A chunk keeps two texts. `text` is what a reader sees, as in the source. `index_text` adds the
chunk's context (year · district · case · section), so a chunk that only says "区行政服务中心…"
is still found by a question that names the district.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rag.corpus import Case, case_lines, heading_level

SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")
SOFT_BREAK = re.compile(r"(?<=[，、：,:])")


@dataclass(frozen=True)
class Sentence:
    text: str  # an exact substring of its source line
    line: int
    heading: bool = False  # the lead sentence of a numbered or headed paragraph


@dataclass(frozen=True)
class Chunk:
    id: int
    case: Case
    section: tuple[str, ...]
    sentences: tuple[Sentence, ...]

    @property
    def lines(self) -> tuple[int, int]:
        return self.sentences[0].line, self.sentences[-1].line

    @property
    def text(self) -> str:
        parts, last = [], None
        for s in self.sentences:
            parts.append(("\n" if last is not None and s.line != last else "") + s.text)
            last = s.line
        return "".join(parts)

    @property
    def context(self) -> str:
        c = self.case
        bits = [f"{c.year}年", c.district or "", c.title, " > ".join(self.section)]
        return " · ".join(b for b in bits if b)

    @property
    def index_text(self) -> str:
        return f"{self.context}\n{self.text}"

    def to_dict(self) -> dict:
        return {"id": self.id, "case": self.case.id, "section": list(self.section),
                "sentences": [[s.text, s.line, s.heading] for s in self.sentences]}

    @classmethod
    def from_dict(cls, d: dict, cases: dict[str, Case]) -> "Chunk":
        return cls(d["id"], cases[d["case"]], tuple(d["section"]),
                   tuple(Sentence(t, n, h) for t, n, h in d["sentences"]))


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Split at sentence ends; a sentence longer than max_chars is split at commas, then cut."""
    out = []
    for sent in SENTENCE_END.split(text):
        if not sent.strip():
            continue
        if len(sent) <= max_chars:
            out.append(sent)
            continue
        piece = ""
        for part in SOFT_BREAK.split(sent):
            if piece and len(piece) + len(part) > max_chars:
                out.append(piece)
                piece = ""
            piece += part
            while len(piece) > max_chars:
                out.append(piece[:max_chars])
                piece = piece[max_chars:]
        if piece:
            out.append(piece)
    return out


def case_sentences(case: Case, seeds: Path, max_chars: int) -> list[tuple[tuple[str, ...], Sentence]]:
    """Every sentence of a case with the heading path of the section it sits in."""
    out = []
    for n, text in case_lines(case, seeds):
        if not text:
            continue
        path = section_path(case, n)
        for i, sent in enumerate(split_sentences(text, max_chars)):
            out.append((path, Sentence(sent.strip(), n, heading=(i == 0 and bool(heading_level(text))))))
    return out


def section_path(case: Case, line: int) -> tuple[str, ...]:
    """The innermost section holding the line; the spans nest, so the longest path wins."""
    best: tuple[str, ...] = ()
    for s in case.sections:
        if s.lines[0] <= line <= s.lines[1] and len(s.path) > len(best):
            best = s.path
    return best


def chunk_cases(cases: list[Case], seeds: Path, size: int = 300) -> list[Chunk]:
    chunks: list[Chunk] = []
    for case in cases:
        current: list[Sentence] = []
        current_path: tuple[str, ...] = ()
        only_headings = True

        def flush():
            nonlocal current, only_headings
            if current:
                chunks.append(Chunk(len(chunks), case, current_path, tuple(current)))
            current, only_headings = [], True

        for path, sent in case_sentences(case, seeds, size):
            full = sum(len(s.text) for s in current) + len(sent.text) > size
            # A chunk that holds only bare headings so far runs on into its first section's
            # text, so that "二、主要做法" is never a chunk of its own.
            if current and (full or (path != current_path and not only_headings)):
                flush()
            if only_headings:
                current_path = path
            current.append(sent)
            only_headings = only_headings and sent.heading and is_bare_heading(sent)
        flush()
    return chunks


def is_bare_heading(sent: Sentence) -> bool:
    """A heading with no text of its own, like "二、主要做法"."""
    return len(sent.text) <= 30 and not sent.text.endswith("。")

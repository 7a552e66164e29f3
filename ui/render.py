"""Answers → the HTML shown in the chat.

Every piece of text that comes from a document or a user is passed through html.escape here,
before any tag is added around it. The Chatbot's own sanitizer is a second line of defence,
not the first: it strips a <script> but would also hide it, where a user's question must
show exactly as typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

from rag.answer import NO_DISTRICT, Answer, Citation, line_span
from rag.corpus import Case, clean, read_lines

CITE = re.compile(r"\[(\d+)\]")
BOLD = re.compile(r"\*\*(.+?)\*\*")
BULLET = re.compile(r"^[-•]\s*")
# The kinds whose first line is "区 —— 《案例》（文件，年份）", a heading rather than a finding.
HEADED_KINDS = ("which_district", "what_measure")
QUOTE_CONTEXT = 90  # characters of the source paragraph kept either side of the cited sentence
CONTEXT_LINES = 30  # non-empty lines of a section shown before the rest is cut


def inline(text: str) -> str:
    """One line of answer text: escaped, **bold** kept, [n] markers as citation badges."""
    html = BOLD.sub(r"<strong>\1</strong>", escape(text))
    return CITE.sub(r'<sup class="cite" title="来源 \1">\1</sup>', html)


def lines_html(text: str, headed: bool = False) -> str:
    out = []
    for i, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        classes = ["line"]
        if BULLET.match(line):
            classes.append("bullet")
            line = BULLET.sub("", line)
        if headed and i == 0:
            classes.append("lead")
        out.append(f'<div class="{" ".join(classes)}">{inline(line)}</div>')
    return "".join(out)


def location(source: str, lines) -> str:
    return f'<code class="loc">seeds/{escape(source)}</code> {line_span(lines)}'


def marked(paragraph: str, sentence: str, window: int | None = None) -> str:
    """The paragraph, escaped, with the sentence in <mark>; cut to `window` characters either
    side of it so that a long paragraph does not bury the quote."""
    at = paragraph.find(sentence) if sentence else -1
    if at < 0:
        return escape(paragraph)
    before, after = paragraph[:at], paragraph[at + len(sentence):]
    if window is not None:
        before = ("…" + before[-window:]) if len(before) > window else before
        after = (after[:window] + "…") if len(after) > window else after
    return f"{escape(before)}<mark>{escape(sentence)}</mark>{escape(after)}"


@dataclass
class Renderer:
    """Turns Answers into HTML; it reads the cited source lines from `seeds`."""

    cases: dict[str, Case]
    seeds: Path

    def user(self, question: str) -> str:
        return escape(question).replace("\n", "<br>")

    def partial(self, text: str) -> str:
        """The answer while it streams in: its lines so far, and a sign that more is coming."""
        status = "作答中…" if text else "检索中…"
        return f'<div class="answer streaming">{lines_html(text)}<span class="typing">{status}</span></div>'

    def answer(self, answer: Answer) -> str:
        if not answer.answerable:
            return self.not_found(answer)
        body = lines_html(answer.answer, headed=answer.kind in HEADED_KINDS)
        return f'<div class="answer found">{body}{self.sources(answer.citations)}</div>'

    def not_found(self, answer: Answer) -> str:
        related = "".join(
            f'<li><span class="district">{escape(r["district"] or NO_DISTRICT)}</span> · '
            f'《{escape(r["case_title"])}》 · {escape(r["collection"])}（{r["year"]}年） · '
            f'{location(r["source"], r["lines"])}</li>'
            for r in answer.related)
        related_html = (f'<div class="related"><div class="panel-title">可能相关</div><ul>{related}</ul></div>'
                        if related else "")
        return (f'<div class="answer not-found"><div class="nf-title">未找到答案</div>'
                f'{lines_html(answer.answer)}{related_html}</div>')

    # -- sources ----------------------------------------------------------------------------
    def sources(self, citations: list[Citation]) -> str:
        if not citations:
            return ""
        items = "".join(self.source(c) for c in citations)
        return f'<div class="sources"><div class="panel-title">来源（{len(citations)}）</div><ol>{items}</ol></div>'

    def source(self, c: Citation) -> str:
        lines = self.source_lines(c.source)
        a, b = c.lines
        paragraph = " ".join(clean(lines[n - 1]) for n in range(a, b + 1) if 0 < n <= len(lines))
        head = (f'<sup class="cite">{c.n}</sup><span class="district">{escape(c.district or NO_DISTRICT)}</span>'
                f' · <span class="case-title">《{escape(c.case_title)}》</span>'
                f' · {escape(c.collection)}（{c.year}年） · '
                f'{f"<code class=loc>{escape(c.location)}</code>" if c.location else location(c.source, c.lines)}')
        return (f'<li class="source"><div class="source-head">{head}</div>'
                f'<blockquote class="quote">{marked(paragraph or c.quote, c.quote, QUOTE_CONTEXT)}</blockquote>'
                f'{self.context(c, lines)}</li>')

    def context(self, c: Citation, lines: tuple[str, ...]) -> str:
        """The section around the cited lines, from the source file, folded away by default."""
        case = self.cases.get(c.case_id)
        a, b = c.lines
        span, title = self.section_of(case, a) if case else ((max(1, a - 3), b + 3), "")
        numbered = [(n, clean(lines[n - 1])) for n in range(span[0], span[1] + 1) if 0 < n <= len(lines)]
        numbered = [(n, text) for n, text in numbered if text]
        cited = [i for i, (n, _) in enumerate(numbered) if a <= n <= b]
        if len(numbered) > CONTEXT_LINES and cited:
            start = max(0, min(cited[0] - CONTEXT_LINES // 2, len(numbered) - CONTEXT_LINES))
            numbered = numbered[start:start + CONTEXT_LINES]
        rows = "".join(
            f'<div class="ctx-line{" hit" if a <= n <= b else ""}"><span class="ln">{n}</span>'
            f'<span class="tx">{marked(text, c.quote) if a <= n <= b else escape(text)}</span></div>'
            for n, text in numbered)
        label = f"{escape(title)}（{line_span(span)}）" if title else line_span(span)
        return f'<details class="context"><summary>原文上下文：{label}</summary><div class="ctx">{rows}</div></details>'

    @staticmethod
    def section_of(case: Case, line: int) -> tuple[tuple[int, int], str]:
        """The innermost section holding the line, else the whole case."""
        holding = [s for s in case.sections if s.lines[0] <= line <= s.lines[1]]
        if not holding:
            return case.lines, case.title
        best = min(holding, key=lambda s: s.lines[1] - s.lines[0])
        return best.lines, " > ".join(best.path)

    def source_lines(self, source: str) -> tuple[str, ...]:
        # Only a file of the document store: a planted "/etc/passwd" must not be shown.
        path = (self.seeds / source).resolve()
        return read_lines(path) if path.parent == self.seeds.resolve() and path.is_file() else ()

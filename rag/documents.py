"""Files a person brings (.docx .pdf .txt .md .html) → lines of text, each with the place in the
file a person can open to find it: a PDF's page and line, a Word paragraph and its heading path,
a text, Markdown or HTML file's line.

One stored line is one paragraph (a PDF's wrapped lines merged back), so the corpus reads every
kind of file the way it reads the seeds. Text is kept as the file has it: no NFKC, which would
turn （ into ( and break the heading patterns.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import median

KINDS = (".docx", ".pdf", ".txt", ".md", ".html", ".htm")
CONVERTIBLE = (".doc", ".wps")  # through LibreOffice, when it is installed
MAX_FILE_BYTES = 50_000_000  # a 49-page PDF of the corpus is ~1 MB; a scanned one is refused anyway


CN_NUM = "一二三四五六七八九十"
# Government headings by their numbering: 一、 / （一） / 1. or （1）. No parser marks a Normal-style
# "三、取得成效" as a heading, so the pattern decides, with styles and font sizes beside it.
HEADING_LEVELS = (
    (1, re.compile(rf"^[{CN_NUM}]+、|^(工作背景|背景情况|基本情况)$")),
    (2, re.compile(rf"^[（(][{CN_NUM}]+[）)]")),
    (3, re.compile(r"^(\d+[、.．]|[（(]\d+[）)])")),
)


# The corpus's entry labels (案例七 …, 排名3) always start a paragraph, even after a full line.
ENTRY = re.compile(rf"^(案例[{CN_NUM}]+|排名\d+)(\s|$)")
SENTENCE_END = ("。", "；", "：", "！", "？", ";", ":", "!", "?")


def heading_level(text: str) -> int | None:
    for level, pattern in HEADING_LEVELS:
        if pattern.match(text):
            return level
    return None


class DocumentError(ValueError):
    """A file that cannot be read as a document; the message says why and what to do."""


@dataclass(frozen=True)
class Line:
    text: str
    where: dict  # {"page": p, "line": l} | {"paragraph": n, "headings": [...]} | {"line": n}
    level: int | None = None  # heading level given by a style, a font size or a bookmark


@dataclass(frozen=True)
class Parsed:
    kind: str  # docx, pdf, txt, md, html
    lines: tuple[Line, ...]
    title: str | None = None  # from the file's own metadata, where it has one


def place(where: dict) -> str:
    """A location as a person reads it: 第3页第12行, 第15段（一、… > （二）…）, 第7行."""
    if "page" in where:
        return f"第{where['page']}页第{where['line']}行"
    if "paragraph" in where:
        path = " > ".join(where.get("headings") or ())
        return f"第{where['paragraph']}段" + (f"（{path}）" if path else "")
    return f"第{where['line']}行"


def parse(path: Path, soffice: str = "") -> Parsed:
    """`soffice`: the LibreOffice that reads .doc and .wps (Config.soffice)."""
    suffix = path.suffix.lower()
    if suffix in CONVERTIBLE:
        return parse_converted(path, soffice)
    if suffix not in KINDS:
        raise DocumentError(f"不支持的文件类型 {suffix or '（无扩展名）'}：{path.name}。支持 .docx .pdf .txt .md .html")
    if path.is_symlink() or not path.is_file():
        raise DocumentError(f"找不到文件，或它不是普通文件：{path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DocumentError(f"文件过大（{path.stat().st_size} 字节，上限 {MAX_FILE_BYTES}）：{path.name}")
    parsed = {".docx": parse_docx, ".pdf": parse_pdf, ".txt": parse_txt, ".md": parse_md,
              ".html": parse_html, ".htm": parse_html}[suffix](path)
    if not any(line.text.strip() for line in parsed.lines):
        raise DocumentError(f"文件中没有文字：{path.name}")
    return parsed


def read_text(path: Path) -> str:
    """UTF-8 (with or without a BOM), else GB18030, which Chinese government files often are."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError(f"无法识别文件编码（应为 UTF-8 或 GB18030）：{path.name}")


def parse_txt(path: Path) -> Parsed:
    # Line for line, blank lines included, so a citation's line is the file's own line.
    return Parsed("txt", tuple(Line(t.rstrip(), {"line": n}) for n, t in enumerate(read_text(path).splitlines(), 1)))


def parse_md(path: Path) -> Parsed:
    from markdown_it import MarkdownIt

    lines, level = [], None
    for token in MarkdownIt().parse(read_text(path)):
        if token.type == "heading_open":
            level = int(token.tag[1:])
        elif token.type == "inline" and token.map:
            # Soft breaks inside a paragraph are the writer's wrapping, not spaces, in Chinese text.
            text = "".join(c.content if c.type in ("text", "code_inline") else "" for c in token.children or ())
            if text.strip():
                lines.append(Line(text.strip(), {"line": token.map[0] + 1}, level))
            level = None
    return Parsed("md", tuple(lines))


HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "pre", "blockquote", "dt", "dd")


def parse_html(path: Path) -> Parsed:
    from bs4 import BeautifulSoup

    # html.parser, not lxml: only it records each tag's sourceline.
    soup = BeautifulSoup(read_text(path), "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    lines = []
    for el in soup.find_all(HTML_BLOCKS):
        if el.find(HTML_BLOCKS):  # its inner blocks are lines of their own
            continue
        cells = el.find_all(["td", "th"]) if el.name == "tr" else [el]
        text = " | ".join(re.sub(r"\s+", " ", c.get_text(" ", strip=True)) for c in cells).strip()
        if text:
            level = int(el.name[1]) if re.fullmatch(r"h[1-6]", el.name) else None
            lines.append(Line(text, {"line": el.sourceline}, level))
    title = soup.title.get_text(strip=True) if soup.title else None
    return Parsed("html", tuple(lines), title or None)


def parse_docx(path: Path) -> Parsed:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as e:
        raise DocumentError(f"无法打开 Word 文件（文件损坏、加密或不是 .docx）：{path.name}（{e}）") from None
    lines, headings, title = [], [], core_title(document)
    # Paragraphs and tables in body order, each numbered as the paragraph (or table) it is.
    for n, item in enumerate(document.iter_inner_content(), 1):
        if isinstance(item, Table):
            for r, row in enumerate(item.rows, 1):
                cells = list(dict.fromkeys(c.text.strip() for c in row.cells))  # merged cells repeat
                text = " | ".join(c for c in cells if c)
                if text:
                    lines.append(Line(text, {"paragraph": n, "row": r, "headings": list(headings)}))
            continue
        text = item.text.strip()
        if not text:
            continue
        style = item.style.name if item.style is not None else ""
        level = 0 if style == "Title" else int(m.group(1)) if (m := re.fullmatch(r"Heading (\d)", style)) else None
        if level == 0:
            title = title or text
        elif level:
            headings[level - 1:] = [text]
        lines.append(Line(text, {"paragraph": n, "headings": list(headings)}, level))
    return Parsed("docx", tuple(lines), title)


def core_title(document) -> str | None:
    """The title in the file's core properties, if it has them. Not `core_properties.title`: python-docx
    looks the part up by one relationship type only, and where a file relates it by the other one
    LibreOffice writes (…/officedocument/2006/…), it makes up a part titled "Word Document"."""
    from docx.oxml.parser import parse_xml

    for rel in document.part.package.rels.values():
        if rel.reltype.endswith("/metadata/core-properties") and not rel.is_external:
            title = parse_xml(rel.target_part.blob).findtext("{http://purl.org/dc/elements/1.1/}title")
            return (title or "").strip() or None
    return None


def parse_pdf(path: Path) -> Parsed:
    import pdfplumber
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfparser import PDFSyntaxError
    from pdfplumber.utils.exceptions import PdfminerException

    try:
        with pdfplumber.open(str(path)) as pdf:
            title = (pdf.metadata.get("Title") or "").strip() or None
            pages = [page.extract_text_lines(return_chars=True) for page in pdf.pages]
            images = sum(len(page.images) for page in pdf.pages)
    except PdfminerException as e:  # pdfplumber wraps pdfminer's own errors
        if isinstance(e.args[0] if e.args else None, (PDFPasswordIncorrect, PDFEncryptionError)):
            raise DocumentError(f"这个 PDF 有密码保护，请先去掉密码再导入：{path.name}") from None
        raise DocumentError(f"无法打开 PDF（文件损坏或不是 PDF）：{path.name}") from None
    except (PDFSyntaxError, ValueError, KeyError, OSError) as e:
        raise DocumentError(f"无法打开 PDF（文件损坏或不是 PDF）：{path.name}（{type(e).__name__}）") from None
    if not pages:
        raise DocumentError(f"这个 PDF 没有页面：{path.name}")
    if not any(line["text"].strip() for page in pages for line in page):
        if not images:
            raise DocumentError(f"这个 PDF 是空白的，没有文字也没有图像：{path.name}")
        raise DocumentError(f"这个 PDF 没有文字层，需要先做 OCR：{path.name}")
    bookmarks = {re.sub(r"\s+", "", t): level for level, t in pdf_outline(path)}
    return Parsed("pdf", tuple(paragraphs(pages, bookmarks)), title)


def pdf_outline(path: Path) -> list[tuple[int, str]]:
    """(level, title) of the PDF's bookmarks, which Word headings become in an exported PDF."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(path))
    try:
        return [(item.level + 1, title) for item in pdf.get_toc() if (title := item.get_title())]
    finally:
        pdf.close()


def line_size(line: dict) -> float:
    return median(c["size"] for c in line["chars"]) if line["chars"] else 0.0


# Where a line may not wrap, after Unicode's line breaking rules (UAX #14) as LibreOffice applies
# them: before closing punctuation, after an opening bracket, and on either side of a quotation
# mark. A line then wraps early, taking the character before a ” or a ， down with it.
NO_BREAK_BEFORE = "，。、；：！？）》」』】〕,.;:!?)%"
NO_BREAK_AFTER = "（《「『【〔("
QUOTES = "“”‘’"


def glued(a: str, b: str) -> bool:
    """Whether a line cannot wrap between the characters a and b."""
    if b.isspace():
        return False
    return (a.isascii() and b.isascii()) or b in NO_BREAK_BEFORE or a in NO_BREAK_AFTER or a in QUOTES or b in QUOTES


def first_word_width(line: dict) -> float:
    """How wide the start of a line is up to where it could have wrapped: one CJK character with
    what cannot be parted from it (a quotation mark, closing punctuation), or a run of Latin
    letters and digits."""
    chars = line["chars"]
    end = 1
    while end < len(chars) and glued(chars[end - 1]["text"], chars[end]["text"]):
        end += 1
    return chars[end - 1]["x1"] - chars[0]["x0"] if chars else 0.0


def paragraphs(pages: list[list[dict]], bookmarks: dict[str, int]) -> list[Line]:
    """Wrapped lines merged back into paragraphs. A line continues the one above when its first
    word would not have fitted after it before the right margin, in the same font size, with no gap wider than the line pitch (the lower
    quartile of the page's gaps: paragraphs are spaced wider), and the line is not indented, not
    an entry label, and not a numbered heading after a finished sentence ("92.54万" wraps onto a
    line of its own). Headings: a bookmark, or a font larger than body text."""
    sizes = [round(line_size(ln), 1) for page in pages for ln in page if ln["text"].strip()]
    body = median(sizes)
    larger = sorted({s for s in sizes if s > body * 1.1}, reverse=True)
    out: list[Line] = []
    prev, prev_right, prev_page = None, 0.0, 0  # a paragraph may run on over a page break
    for p, page in enumerate(pages, 1):
        lines = [ln for ln in page if ln["text"].strip()]
        if not lines:
            continue
        left, right = min(ln["x0"] for ln in lines), max(ln["x1"] for ln in lines)
        pitches = [b["top"] - a["top"] for a, b in zip(lines, lines[1:]) if b["top"] > a["top"]]
        pitch = sorted(pitches)[len(pitches) // 4] if pitches else 0
        for n, ln in enumerate(lines, 1):
            size, text = round(line_size(ln), 1), ln["text"].strip()
            ran_on = prev is not None and (
                prev["x1"] + first_word_width(ln) > prev_right - size * 0.5 and round(line_size(prev), 1) == size
                and (p != prev_page or ln["top"] - prev["top"] <= pitch * 1.3) and ln["x0"] <= left + size * 0.5
                and not ENTRY.match(text) and out[-1].level is None
                and not (heading_level(text) and out[-1].text.endswith(SENTENCE_END)))
            if ran_on:
                last = out[-1]
                space = " " if last.text[-1:].isascii() and last.text[-1:].isalnum() and text[:1].isascii() else ""
                out[-1] = Line(last.text + space + text, last.where, last.level)
            else:
                level = bookmarks.get(re.sub(r"\s+", "", text))
                if level is None and size in larger:
                    level = larger.index(size) + 1
                out.append(Line(text, {"page": p, "line": n}, level))
            prev, prev_right, prev_page = ln, right, p
    # A merged paragraph that is a bookmark's title is a heading too (it wrapped onto two lines).
    return [Line(x.text, x.where, x.level if x.level is not None else bookmarks.get(re.sub(r"\s+", "", x.text)))
            for x in out]


def parse_converted(path: Path, soffice: str = "") -> Parsed:
    """.doc and .wps through LibreOffice to .docx, when it is installed: `soffice` names it (a
    command or a path); unset, soffice or libreoffice on the PATH."""
    found = shutil.which(soffice) if soffice else shutil.which("soffice") or shutil.which("libreoffice")
    if not found:
        missing = f"（找不到 {soffice}）" if soffice else ""
        raise DocumentError(f"{path.suffix} 文件需要 LibreOffice 才能读取{missing}（apt-get install libreoffice-writer-nogui），"
                            f"或先用 Word/WPS 另存为 .docx：{path.name}")
    with tempfile.TemporaryDirectory() as out:
        # A profile of its own: the server's user may have no writable home, and two conversions
        # sharing one profile wait for each other's lock or fail.
        profile = f"-env:UserInstallation={Path(out, 'profile').as_uri()}"
        run = subprocess.run([found, profile, "--headless", "--convert-to", "docx", "--outdir", out, str(path)],
                             capture_output=True, timeout=300)
        converted = Path(out) / (path.stem + ".docx")
        if run.returncode or not converted.exists():
            raise DocumentError(f"LibreOffice 无法转换 {path.name}：{run.stderr.decode(errors='replace')[:200]}")
        return parse_docx(converted)

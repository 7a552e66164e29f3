"""The seeds written out as the files people bring: .docx through python-docx with real Heading
styles, and .pdf through LibreOffice where it is installed, else through fpdf2 with an embedded
CJK font and bookmarks for the headings. Each file is named by its seed's id, so ingesting it
replaces that seed, and its metadata title is the seed's title, as a publisher's file would have."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rag.config import REPO_SEEDS
from rag.corpus import clean, load_cases, load_manifest, read_lines
from rag.documents import heading_level

CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",)


def headed(text: str) -> int | None:
    """A heading line of the seed: numbered and short (a numbered paragraph is body text)."""
    level = heading_level(text)
    return level if level and len(text) <= 40 and not text.endswith("。") else None


def seed_paragraphs(doc: dict) -> list[str]:
    return [t for t in (clean(x) for x in read_lines(REPO_SEEDS / doc["file"])) if t]


def write_docx(doc: dict, out: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = doc["title"]
    for text in seed_paragraphs(doc):
        level = headed(text)
        document.add_paragraph(text, style=f"Heading {level}" if level else None)
    path = out / f"{doc['id']}.docx"
    document.save(str(path))
    return path


def write_pdf(doc: dict, out: Path, docx_path: Path | None = None) -> Path:
    soffice = shutil.which("soffice")
    if soffice and docx_path:
        subprocess.run([soffice, "--headless", "--convert-to", "pdf", "--outdir", str(out), str(docx_path)],
                       check=True, capture_output=True, timeout=300)
        return out / f"{doc['id']}.pdf"
    from fpdf import FPDF
    from fpdf.enums import WrapMode

    pdf = FPDF()
    pdf.set_title(doc["title"])
    pdf.add_font("cjk", "", next(f for f in CJK_FONTS if Path(f).exists()), collection_font_number=0)
    pdf.add_page()
    depth = -1  # bookmark levels may only go one deeper at a time
    for text in seed_paragraphs(doc):
        level = headed(text)
        size = {1: 14, 2: 13, 3: 12}.get(level, 11)
        pdf.set_font("cjk", size=size)
        if level:
            depth = min(level - 1, depth + 1)
            pdf.start_section(text, level=depth)
        pdf.multi_cell(0, size * 0.55, text, wrapmode=WrapMode.CHAR)  # Chinese wraps at any character
        pdf.ln(size * 0.6)  # space between paragraphs, wider than between wrapped lines
    path = out / f"{doc['id']}.pdf"
    pdf.output(str(path))
    return path


def chinese_number(n: int) -> str:
    """1 → 一, 10 → 十, 26 → 二十六: how a collection numbers its titles."""
    digits = "零一二三四五六七八九"
    tens, ones = divmod(n, 10)
    return (digits[tens] if tens > 1 else "") + ("十" if tens else "") + (digits[ones] if ones else "")


def numbered_2019(shape: str) -> list[str]:
    """The 2019 collection laid out as numbered titles instead of a title and a district line:
    "一、浦东新区：设立国际人才港…" ("label"), or "1. 浦东设立国际人才港…" ("sentence", the district's
    short form, which only the gazetteer knows). The
    case spans come from the seed's own parse, so the text between titles is the seed's."""
    doc = next(d for d in load_manifest(REPO_SEEDS)["documents"] if d["id"] == "2019")
    lines = [clean(x) for x in read_lines(REPO_SEEDS / doc["file"])]
    starts = {c.lines[0]: (i, c) for i, c in enumerate(load_cases(REPO_SEEDS), 1) if c.document == "2019"}
    out, skip = [], set()
    for n, text in enumerate(lines, 1):
        if n in skip:
            continue
        if n in starts:
            i, case = starts[n]
            skip.add(n + 1)  # the district line, now in the title
            text = (f"{chinese_number(i)}、{case.district}：{case.title}" if shape == "label"
                    else f"{i}. {case.district[:2]}{case.title}")
        out.append(text)
    return out


def write_numbered_2019(out: Path, kind: str, shape: str) -> Path:
    """numbered_2019 as a .txt, or as a .docx whose titles have the Heading 1 style."""
    lines = numbered_2019(shape)
    path = out / f"numbered-2019-{shape}.{kind}"
    if kind == "txt":
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    import docx

    document = docx.Document()
    document.core_properties.title = "第一批区优化营商环境工作特色案例"
    for text in lines:
        level = headed(text)
        document.add_paragraph(text, style=f"Heading {level}" if level else None)
    document.save(str(path))
    return path


def write_all(out: Path, kinds=("docx", "pdf")) -> dict[str, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {k: [] for k in kinds}
    for doc in load_manifest(REPO_SEEDS)["documents"]:
        d = out / "docx"
        d.mkdir(exist_ok=True)
        docx_path = write_docx(doc, d)
        if "docx" in kinds:
            files["docx"].append(docx_path)
        if "pdf" in kinds:
            p = out / "pdf"
            p.mkdir(exist_ok=True)
            files["pdf"].append(write_pdf(doc, p, docx_path))
    return files

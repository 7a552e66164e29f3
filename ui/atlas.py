"""The 案例地图 tab: what the corpus holds, before anyone asks.

The district map coloured by the number of cases, for all documents or one; a click on a district
lists its cases, and a case shows its source text with its heading structure and line numbers.
Cases whose text names no district are counted and listed too, so none silently drops off the map.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path

import gradio as gr

from rag.answer import NO_DISTRICT
from rag.corpus import Case, case_lines, heading_level
from ui import map as districtmap

ALL = "全部"


def collection_choices(cases: dict[str, Case]) -> list[tuple[str, str]]:
    by_collection = {(c.year, c.collection) for c in cases.values()}
    return [(ALL, ALL)] + [(f"{year} · {col}", col) for year, col in sorted(by_collection)]


def chosen(cases: dict[str, Case], collection: str) -> list[Case]:
    return [c for c in cases.values() if collection in (ALL, c.collection)]


def map_html(shapes, cases: dict[str, Case], collection: str, district: str | None = None) -> str:
    picked = chosen(cases, collection)
    counts = Counter(c.district for c in picked if c.district)
    unknown = sum(1 for c in picked if not c.district)
    legend = (f'<p class="map-legend">{len(picked)} 个案例，{len(counts)} 个区；颜色越深，案例越多。'
              f'点击一个区，列出它的案例。</p>')
    # Cases with no district get a place of their own beside the map: they must stay visible.
    nowhere = (f'<button type="button" class="no-district" data-district="{NO_DISTRICT}">'
               f'{NO_DISTRICT}：{unknown} 个案例</button>' if unknown else "")
    return (legend + districtmap.svg(shapes, counts={d.name: counts.get(d.name, 0) for d in shapes.districts},
                                     selected={district} if district else (), shades=4) + nowhere)


def case_label(c: Case) -> str:
    a, b = c.lines
    return f"《{c.title}》 · {c.collection} · {c.year}年 · seeds/{c.source} 第{a}–{b}行"


def cases_of(cases: dict[str, Case], collection: str, district: str) -> list[Case]:
    want = None if district == NO_DISTRICT else district
    return sorted((c for c in chosen(cases, collection) if c.district == want), key=lambda c: (c.year, c.id))


def case_html(case: Case, seeds: Path) -> str:
    """The case's lines as written, headings (一、/（一）/1、) set apart by level, each line numbered."""
    rows = []
    for n, text in case_lines(case, seeds):
        if not text:
            continue
        level = heading_level(text)
        kind = f"h{level}" if level else "p"
        rows.append(f'<div class="case-line {kind}"><span class="ln">{n}</span><span class="tx">{escape(text)}</span></div>')
    head = (f'<div class="case-head"><strong>《{escape(case.title)}》</strong><br>'
            f'{escape(case.district or NO_DISTRICT)} · {escape(case.collection)}（{case.year}年） · '
            f'<code class="loc">seeds/{escape(case.source)}</code> 第{case.lines[0]}–{case.lines[1]}行</div>')
    return f'<div class="case-text">{head}{"".join(rows)}</div>'


CSS = """
.no-district { margin: .3em 0; padding: .2em .7em; border: 1px dashed #94a3b8; border-radius: 4px;
  background: none; cursor: pointer; font-size: .9em; }
.case-text .case-head { margin-bottom: .5em; line-height: 1.6; }
.case-text .case-line { display: flex; gap: .6em; line-height: 1.65; }
.case-text .ln { flex: 0 0 3em; text-align: right; color: var(--body-text-color-subdued);
  font-family: var(--font-mono); font-size: .85em; }
.case-text .h1 .tx { font-weight: 700; font-size: 1.05em; }
.case-text .h2 .tx { font-weight: 700; padding-left: 1em; }
.case-text .h3 .tx { font-weight: 600; padding-left: 2em; }
.case-text .p .tx { padding-left: 2em; }
"""


def build(now, shapes, tab: gr.Tab):
    """The tab's contents, inside the caller's `tab`. `now()` gives the cases and their folder at each
    event: the 文档 tab changes them while the server runs. The map is drawn when the tab is opened:
    the page does not ship a second map to people who only ask questions. Returns the function that
    redraws the tab after such a change, and its outputs."""
    with gr.Row():
        with gr.Column(scale=3):
            collection = gr.Radio(collection_choices(now()[0]), value=ALL, label="年份 / 文件",
                                  elem_id="atlas-collection")
            atlas_map = gr.HTML("", js_on_load=districtmap.CLICK_JS,
                                css_template=districtmap.CSS + CSS, elem_id="atlas-map")
        with gr.Column(scale=4):
            listed = gr.Radio([], label="点击地图上的区", elem_id="atlas-cases")
            text = gr.HTML("", elem_id="atlas-case", css_template=CSS)

    def pick_collection(col):
        return map_html(shapes, now()[0], col), gr.Radio(choices=[], value=None, label="点击地图上的区"), ""

    def pick_district(col, evt: gr.EventData):
        name = (evt._data or {}).get("district")
        if not name:
            return gr.skip(), gr.skip(), gr.skip()
        cases = now()[0]
        found = cases_of(cases, col, name)
        listed_update = gr.Radio(choices=[(case_label(c), c.id) for c in found], value=None,
                                 label=f"{name}：{len(found)} 个案例（点击查看原文）")
        return map_html(shapes, cases, col, name), listed_update, ""

    def show_case(cid):
        cases, seeds = now()
        return case_html(cases[cid], seeds) if cid in cases else ""

    def refresh():
        # The map goes blank and is drawn from the new cases when the tab is next opened.
        return (gr.Radio(choices=collection_choices(now()[0]), value=ALL), "",
                gr.Radio(choices=[], value=None, label="点击地图上的区"), "")

    tab.select(lambda col: map_html(shapes, now()[0], col), [collection], [atlas_map], api_visibility="private")
    collection.change(pick_collection, [collection], [atlas_map, listed, text], api_visibility="private")
    atlas_map.click(pick_district, [collection], [atlas_map, listed, text], api_visibility="private")
    listed.change(show_case, [listed], [text], api_visibility="private")
    return refresh, [collection, atlas_map, listed, text]

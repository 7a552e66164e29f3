"""The map beside the answers, the 案例地图 tab, 👍/👎 and copy-as-Markdown, in headless Chromium.

Same offline browser as test_ui.py: any request not for the app fails the last test. Screenshots
go to test-artifacts/screenshots/ (10-… onwards).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_ui import ask, offline_page, shot

from ui import copy as copymd

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def outside():
    return []


@pytest.fixture(scope="module")
def page(server, outside):
    with offline_page(server, outside, clipboard=True) as page:
        yield page


def lit(page) -> set[str]:
    return {e.get_attribute("data-district") for e in page.locator("#answer-map path.hl").all()}


def new_chat(page) -> None:
    """Clears the conversation, so that the next question is not read as a follow-up."""
    clear = page.locator('#chat button[aria-label="清空对话"]')
    if clear.count():
        clear.click()
        page.wait_for_function("document.querySelector('#answer-map').innerText.includes('提问后')")


def wait_lit(page, names: set[str]) -> None:
    """The map updates just after the answer has finished streaming."""
    page.wait_for_function(
        "want => { const got = [...document.querySelectorAll('#answer-map path.hl')].map(e => e.dataset.district);"
        " return got.length === want.length && want.every(d => got.includes(d)); }", arg=sorted(names))


def test_all_districts_are_drawn_before_any_question(page):
    shapes = page.locator("#answer-map path[data-district]")
    assert shapes.count() == 16
    assert lit(page) == set()
    assert "提问后" in page.inner_text("#answer-map")


def test_which_question_lights_one_district(page, chain):
    new_chat(page)
    question = "哪个区推出了“一楼一事办”？"
    ask(page, question)
    wait_lit(page, {"虹口区"})
    assert chain.invoke(question).districts[0] == "虹口区"
    assert "回答所在：虹口区" in page.inner_text("#answer-map")
    shot(page, "10-map-which-district")


def test_list_question_lights_every_district_with_its_case_count(page, chain):
    new_chat(page)
    question = "哪些区搞了企业代办服务？"
    want = chain.invoke(question)
    ask(page, question)
    wait_lit(page, set(want.districts))
    assert len(want.districts) >= 2  # how many is a fitted decision; the map lights exactly those
    for d in want.districts:
        n = len({c.case_id for c in want.citations if c.district == d})
        label = page.locator("#answer-map text", has_text=d.removesuffix("区"))
        assert label.locator("tspan.count").text_content() == str(n)
    shot(page, "11-map-list-districts")


def test_comparison_lights_both_sides(page):
    new_chat(page)
    ask(page, "宝山区和嘉定区的代办服务有什么不同？")
    wait_lit(page, {"宝山区", "嘉定区"})
    assert "对比" in page.inner_text("#answer-map")


def test_a_click_on_the_map_filters_the_answers(page):
    page.locator('#answer-map path[data-district="宝山区"]').click()
    page.wait_for_selector('#answer-map path.sel[data-district="宝山区"]')
    assert "宝山区" in page.inner_text("#filter-districts")
    new_chat(page)
    answer = ask(page, "企业代办服务")
    districts = [t.split(" · ")[0] for t in answer.locator(".source-head").all_inner_texts()]
    assert districts and all("宝山区" in d for d in districts)
    shot(page, "12-map-click-filters")
    # a second click on the same district lifts the filter
    page.locator('#answer-map path[data-district="宝山区"]').click()
    page.wait_for_function("!document.querySelector('#answer-map path.sel')")


def test_copy_as_markdown_holds_the_citations(page, chain):
    new_chat(page)
    question = "浦东人才港把审批时间压缩到了几天？"
    answer = ask(page, question)
    answer.locator("button.copy-md").click()
    page.wait_for_function("document.querySelector('#chat button.copy-md').innerText === '已复制'")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == copymd.markdown(chain.invoke(question))
    want = chain.invoke(question)
    assert want.citations
    for c in want.citations:
        assert f"`seeds/{c.source}:{c.lines[0]}`" in copied and c.quote in copied and c.case_title in copied
    shot(page, "13-copied")


def test_feedback_round_trips_to_sqlite_and_export(page, cfg):
    new_chat(page)
    answer = ask(page, "哪个区推出了“一楼一事办”？")
    answer.scroll_into_view_if_needed()
    page.locator('#chat button[aria-label="踩"]').last.click()
    page.wait_for_selector("#feedback", state="visible")
    assert "已记录" in page.inner_text("#feedback-status")
    page.fill("#feedback-comment textarea", "引用的案例不对")
    page.locator("#feedback-case input").click()
    page.locator("#feedback-case input").fill("2021-10")
    page.get_by_role("option", name="2021-10", exact=False).first.click()
    page.click("#feedback-send")
    page.wait_for_function("document.querySelector('#feedback-status').innerText.includes('补充已保存')")
    shot(page, "14-feedback")

    out = subprocess.run([sys.executable, "-m", "rag.cli", "feedback", "export"], cwd=ROOT, check=True,
                         capture_output=True, env={**os.environ, "RAG_HOME": str(cfg.home)}).stdout.decode()
    items = [json.loads(line) for line in out.splitlines()]
    mine = [i for i in items if i["feedback"]["comment"] == "引用的案例不对"]
    assert len(mine) == 1
    item = mine[0]
    assert item["question"] == "哪个区推出了“一楼一事办”？" and item["feedback"]["verdict"] == "down"
    assert item["gold_case_ids"] == ["2021-10"] and item["gold_districts"] == ["虹口区"]
    assert item["feedback"]["answer"]["districts"][0] == "虹口区"
    assert item["feedback"]["index_version"]


def test_atlas_lists_a_districts_cases_and_shows_one(page, index):
    page.get_by_role("tab", name="案例地图").click()
    page.wait_for_selector("#atlas-map path.shade4")
    assert page.locator("#atlas-map path[data-district]").count() == 16
    page.locator('#atlas-map path[data-district="徐汇区"]').click()
    page.wait_for_function("document.querySelector('#atlas-cases').innerText.includes('徐汇区：')")
    listed = page.inner_text("#atlas-cases")
    xuhui = [c for c in index.cases.values() if c.district == "徐汇区"]
    assert f"徐汇区：{len(xuhui)} 个案例" in listed
    for c in xuhui:
        assert c.title in listed and f"seeds/{c.source} 第{c.lines[0]}–{c.lines[1]}行" in listed
    page.locator("#atlas-cases label", has_text=xuhui[0].title).click()
    page.wait_for_selector("#atlas-case .case-line.h2")
    text = page.inner_text("#atlas-case")
    assert xuhui[0].title in text and "主要做法" in text
    shot(page, "15-atlas-district")

    page.get_by_role("button", name="（文中未注明所属区）：1 个案例").click()
    page.wait_for_function("document.querySelector('#atlas-cases').innerText.includes('律政联商助企')")
    shot(page, "16-atlas-no-district")


def test_nothing_was_fetched_from_the_internet(page, outside):
    assert outside == []

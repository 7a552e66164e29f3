"""The chat's 文档 tab: the admin uploads a real Markdown report and the running chain cites it at
once; a removal makes it never cited; anyone else is refused; without a login and an admin there is
no tab and no upload. The tab's actions are called as Gradio calls them, with the request's login."""

import re
from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pytest
from test_ingest import home_for

from rag.documents import MAX_FILE_BYTES
from rag.ingest import listing
from ui.app import build_app
from ui.documents import Documents

BOSS, READER = SimpleNamespace(username="boss"), SimpleNamespace(username="reader")
REPORT = ("# 上海市奉贤区2024年营商环境报告\n\n## 一、主要做法\n\n"
          "奉贤区在东方美谷推出“美谷美购”企业服务专线，为化妆品企业提供注册、备案、检测一条龙服务。\n\n"
          "## 二、取得成效\n\n全年服务企业1200家，企业开办平均用时缩短到1个工作日。\n")
SIGNATURE = "哪个区推出了“美谷美购”企业服务专线？"


@pytest.fixture(scope="module")
def admin(cfg, index, tmp_path_factory):
    """A home and chain of their own, behind a login whose admin is boss: the session's index is
    not changed under the other tests."""
    from rag.chain import build

    c = replace(home_for(cfg, index, tmp_path_factory.mktemp("tab-home")), auth="boss:pw", admin="boss")
    return c, build(c, progress=False)


def cited(chain, doc: str) -> list:
    return [c for c in chain.invoke({"question": SIGNATURE}).citations if c.case_id == doc]


def test_the_admin_uploads_a_document_the_chain_cites_it_and_a_removal_ends_that(admin, tmp_path):
    cfg, chain = admin
    tab = Documents(chain, cfg)
    report = tmp_path / "fengxian-2024.md"
    report.write_text(REPORT, encoding="utf-8")
    assert not cited(chain, "fengxian-2024")

    said, rows, ids, emptied = tab.upload(str(report), BOSS)
    assert said.splitlines()[0] == "[1/1] 解析 fengxian-2024.md"
    assert re.fullmatch(r"\+1 文件，\+1 个案例，\+\d+ 段", said.splitlines()[-1])
    assert ["fengxian-2024", "上海市奉贤区2024年营商环境报告", "report", 2024, 1] == rows[-1][:5]
    assert "fengxian-2024" in ids.choices[-1] and emptied is None
    # The same chain object the server holds, without a restart: the new index, cited in its own file.
    citations = cited(chain, "fengxian-2024")
    assert citations and citations[0].location.startswith("fengxian-2024.md 第")

    with pytest.raises(gr.Error, match="确认删除"):
        tab.delete("fengxian-2024", False, BOSS)
    said, rows, ids, unticked = tab.delete("fengxian-2024", True, BOSS)
    assert re.fullmatch(r"-1 文件，-1 个案例，-\d+ 段", said.splitlines()[-1]) and unticked is False
    assert "fengxian-2024" not in [r[0] for r in rows]
    assert not cited(chain, "fengxian-2024")
    assert "fengxian-2024" not in chain.answerer.retriever.index.cases


def test_a_bad_file_gets_a_clear_message_and_nothing_is_lost(admin, tmp_path):
    cfg, chain = admin
    before, index_before = listing(cfg), chain.answerer.retriever.index
    (tmp_path / "broken.docx").write_bytes(b"not a zip")
    said, *_ = Documents(chain, cfg).upload(str(tmp_path / "broken.docx"), BOSS)
    assert "未导入" in said and "无法打开 Word" in said and said.endswith("1 个文件未导入")
    said, *_ = Documents(chain, cfg).delete("no-such-doc", True, BOSS)
    assert "没有这份文档" in said
    assert listing(cfg) == before and chain.answerer.retriever.index is index_before


def test_anyone_but_the_admin_is_refused(admin, tmp_path):
    cfg, chain = admin
    tab = Documents(chain, cfg)
    report = tmp_path / "fengxian-2024.md"
    report.write_text(REPORT, encoding="utf-8")
    before = listing(cfg)
    for who in (READER, None):
        with pytest.raises(gr.Error, match="管理员"):
            tab.upload(str(report), who)
        with pytest.raises(gr.Error, match="管理员"):
            tab.delete("2021", True, who)
        shown, rows, ids = tab.opened(who)
        assert shown.visible is False and rows == ids == gr.skip()
    assert listing(cfg) == before
    assert tab.opened(BOSS)[0].visible is True


def tab_labels(demo) -> list:
    return [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]


def test_the_tab_and_uploads_exist_only_with_a_login_and_an_admin(chain, cfg, admin):
    for without in (cfg, replace(cfg, auth="reader:pw")):  # no login; a login but no admin
        demo = build_app(chain, without)
        assert "文档" not in tab_labels(demo) and demo.upload_limit == 0
    demo = build_app(admin[1], admin[0])
    assert "文档" in tab_labels(demo) and demo.upload_limit == MAX_FILE_BYTES


def signed_in(p, url: str):
    """Chromium on the chat page, signed in as the admin."""
    from test_ui import CHROMIUM, CHROMIUM_ARGS

    browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
    page.set_default_timeout(120_000)
    page.goto(url)
    page.fill("input[type=text]", "boss")
    page.fill("input[type=password]", "pw")
    page.keyboard.press("Enter")
    page.wait_for_selector("#question textarea")
    return browser, page


@pytest.mark.browser
def test_in_the_browser_the_admin_sees_the_tab_uploads_and_the_chat_cites_the_file(admin, tmp_path):
    from playwright.sync_api import sync_playwright
    from test_ui import ask, shot

    from conftest import chat_server

    cfg, chain = admin
    report = tmp_path / "jinshan-2024.md"
    report.write_text("# 上海市金山区2024年营商环境报告\n\n## 一、主要做法\n\n"
                      "金山区在湾区科创中心推出“湾区快办”专窗，企业登记、许可、社保一窗办结。\n", encoding="utf-8")
    with chat_server(chain, cfg, auth=("boss", "pw")) as url, sync_playwright() as p:
        browser, page = signed_in(p, url)
        page.get_by_role("tab", name="文档").click()
        page.wait_for_function("document.querySelector('#documents-table').innerText.includes('xuhui-plan')")
        page.set_input_files("#documents-upload input[type=file]", str(report))
        page.wait_for_function("document.querySelector('#documents-status textarea').value.includes('+1 文件')")
        assert "jinshan-2024" in page.inner_text("#documents-table")
        shot(page, "20-documents-tab")
        page.get_by_role("tab", name="问答").click()
        sources = ask(page, "哪个区推出了“湾区快办”专窗？").locator(".sources").inner_text()
        assert "jinshan-2024.md 第" in sources
        browser.close()


@pytest.mark.browser
def test_in_the_browser_an_upload_and_a_removal_redraw_the_page_without_a_restart(admin, tmp_path):
    """The header's counts, the 来源文件 filter, the atlas's collections and the feedback's case list
    follow the documents in the same event chain as the change, in the page that made it."""
    from playwright.sync_api import sync_playwright
    from test_ui import ask, shot

    from conftest import chat_server

    cfg, chain = admin
    title = "上海市崇明区2024年营商环境报告"
    report = tmp_path / "chongming-2024.md"
    report.write_text(f"# {title}\n\n## 一、主要做法\n\n崇明区在长兴岛推出“岛企通”服务专窗，船舶企业开办一次办结。\n",
                      encoding="utf-8")
    cases = chain.answerer.retriever.index.cases
    before = f"{len({c.source for c in cases.values()})} 份文件，{len(cases)} 个案例"
    after = f"{len({c.source for c in cases.values()}) + 1} 份文件，{len(cases) + 1} 个案例"

    def options(selector: str) -> str:
        page.locator(f"{selector} input").click()
        listed = page.locator("ul[role=listbox]").inner_text()
        page.keyboard.press("Escape")
        return listed

    with chat_server(chain, cfg, auth=("boss", "pw")) as url, sync_playwright() as p:
        browser, page = signed_in(p, url)
        assert before in page.inner_text("#header") and title not in options("#filter-documents")

        page.get_by_role("tab", name="文档").click()
        page.set_input_files("#documents-upload input[type=file]", str(report))
        page.wait_for_function(f"document.querySelector('#header').innerText.includes('{after}')")
        assert "+1 文件" in page.input_value("#documents-status textarea")
        page.get_by_role("tab", name="问答").click()
        assert f"{title}（2024）" in options("#filter-documents")
        ask(page, "哪个区推出了“岛企通”服务专窗？")
        page.locator('#chat button[aria-label="踩"]').last.click()
        page.wait_for_selector("#feedback", state="visible")
        page.locator("#feedback-case input").fill("chongming-2024")
        assert page.get_by_role("option", name="chongming-2024", exact=False).count() == 1
        page.keyboard.press("Escape")
        page.get_by_role("tab", name="案例地图").click()
        assert f"2024 · {title}" in page.inner_text("#atlas-collection")
        page.wait_for_function(f"document.querySelector('#atlas-map').innerText.includes('{len(cases) + 1} 个案例')")
        shot(page, "21-documents-refresh")

        page.get_by_role("tab", name="文档").click()
        page.locator("#documents-remove-id input").fill("chongming-2024")
        page.get_by_role("option", name="chongming-2024").click()
        page.locator("#documents-remove-confirm input").check()
        page.click("#documents-remove")
        page.wait_for_function(f"document.querySelector('#header').innerText.includes('{before}')")
        assert "-1 文件" in page.input_value("#documents-status textarea")
        page.get_by_role("tab", name="案例地图").click()
        assert title not in page.inner_text("#atlas-collection")
        page.wait_for_function(f"document.querySelector('#atlas-map').innerText.includes('{len(cases)} 个案例')")
        page.get_by_role("tab", name="问答").click()
        assert title not in options("#filter-documents")
        browser.close()

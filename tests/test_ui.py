"""The chat, served by Gradio and driven in Debian's Chromium, and its `ask` API through gradio_client.

The browser runs offline: every request that is not for the app itself is refused and recorded,
and the test fails if there was any. Screenshots of each step go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from rag.answer import Answer, Citation
from ui.render import Renderer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
FINISHED = ".answer.found, .answer.not-found"


@pytest.fixture(scope="module")
def outside():
    """URLs the page tried to fetch from anywhere but the app."""
    return []


@contextmanager
def offline_page(server: str, outside: list, clipboard: bool = False):
    """A Chromium page on the app; every request not for the app is refused and kept in `outside`."""
    # CI installs Chromium (make test); a missing browser is a failure, never a skip.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does it)"
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
        if clipboard:
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.rstrip("/"))

        def offline(route):
            if route.request.url.startswith(server):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", offline)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server)
        page.wait_for_selector("#question textarea")
        yield page
        browser.close()


@pytest.fixture(scope="module")
def page(server, outside):
    with offline_page(server, outside) as page:
        yield page


def ask(page, question: str):
    """Types the question, sends it, and waits for the finished (no longer streaming) answer."""
    before = page.locator(FINISHED).count()
    page.fill("#question textarea", question)
    page.click("#send")
    page.wait_for_function(f"document.querySelectorAll('{FINISHED}').length > {before}")
    page.locator('[data-testid="user"]').last.scroll_into_view_if_needed()
    return page.locator('[data-testid="bot"]').last


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


# -- the browser ---------------------------------------------------------------------------------
@pytest.mark.browser
def test_page_shows_scope_examples_and_settings(page):
    body = page.inner_text("body")
    assert "上海各区优化营商环境案例（2019–2023 年，5 份文件，50 个案例）" in body
    assert "那徐汇区呢？" in body and "哪个区推出了“一楼一事办”？" in body
    page.get_by_text("设置与索引信息").click()
    page.wait_for_selector("table.settings")
    settings = page.inner_text("table.settings")
    assert "抽取式" in settings and "向量模型" in settings and "建于" in settings
    shot(page, "01-start")


@pytest.mark.browser
def test_which_district_then_follow_up(page):
    answer = ask(page, "哪个区推出了“一楼一事办”？")
    assert answer.locator(".answer.found").count() == 1
    text = answer.inner_text()
    assert "虹口区" in text.split("\n")[0]
    assert answer.locator("sup.cite").count() >= 2  # [n] markers became badges
    sources = answer.locator(".sources").inner_text()
    assert "seeds/001_" in sources and "行" in sources and "《" in sources
    assert answer.locator("blockquote.quote mark").count() >= 1
    answer.locator("details.context summary").first.click()
    assert answer.locator("details.context .ctx-line.hit").first.is_visible()
    shot(page, "02-which-district")

    follow_up = ask(page, "它取得了什么成效？")
    assert follow_up.locator(".answer.found").count() == 1
    assert "虹口区" in follow_up.inner_text()  # still about the case the first answer named
    assert "seeds/001_" in follow_up.locator(".sources").inner_text()
    shot(page, "03-follow-up")


@pytest.mark.browser
def test_unanswerable_question_looks_different(page):
    answer = ask(page, "北京市朝阳区推出了哪些营商环境改革？")
    box = answer.locator(".answer.not-found")
    assert box.count() == 1
    text = box.inner_text()
    assert "现有案例材料中没有找到" in text and "可能相关" in text
    assert box.locator(".related li").count() >= 1
    assert answer.locator(".sources").count() == 0
    shot(page, "04-not-found")


@pytest.mark.browser
def test_user_text_is_shown_not_run(page):
    ask(page, XSS)
    question = page.locator('[data-testid="user"]').last
    assert XSS in question.inner_text()
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("#chat script, #chat img[src='x']").count() == 0
    shot(page, "05-escaped")


@pytest.mark.browser
def test_blank_question_keeps_the_conversation_visible(page):
    before = page.locator('[data-testid="bot"]').count()
    assert before >= 1  # the steps above left a transcript
    page.fill("#question textarea", "   ")
    page.click("#send")
    page.get_by_text("问题是空的").first.wait_for()
    assert page.locator('[data-testid="bot"]').count() == before
    assert page.locator('[data-testid="bot"]').last.is_visible()
    # An error would cover the chat with its status overlay; a notice leaves it as it was.
    assert page.locator("#chat .error, #chat .status-tracker.error").count() == 0
    assert "Error" not in page.locator("#chat").inner_text()
    shot(page, "06-blank-question")


@pytest.mark.browser
def test_page_fetches_nothing_from_the_internet(page, outside):
    # Runs last in this file, after every step above has rendered.
    assert outside == []


# -- the API ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def expected(chain, question: str, **extra) -> dict:
    # Through JSON, as `rag ask --json` prints it.
    return json.loads(json.dumps(chain.invoke({"question": question, **extra}).to_dict(), ensure_ascii=False))


def test_ask_endpoint_returns_the_chains_json(client, chain):
    question = "哪个区推出了“一楼一事办”？"
    result = client.predict(question, api_name="/ask")
    assert set(result) == {"question", "answer", "answerable", "districts", "citations", "kind", "related", "mode",
                           "case_ids", "evidence", "confidence", "correction"}
    want = expected(chain, question)
    assert result["answer"] == want["answer"] and result["citations"] == want["citations"]
    assert result == want


def test_ask_endpoint_takes_history_and_filters(client, chain):
    history = [{"role": "user", "content": "静安区在办税方面有什么做法？"},
               {"role": "assistant", "content": chain.invoke("静安区在办税方面有什么做法？").answer}]
    result = client.predict("那徐汇区呢？", history, api_name="/ask")
    assert result == expected(chain, "那徐汇区呢？", history=history)
    assert result["districts"] == ["徐汇区"]
    narrowed = client.predict(question="企业代办服务", districts=["宝山区"], api_name="/ask")
    assert narrowed["citations"] and {c["district"] for c in narrowed["citations"]} == {"宝山区"}


def test_ask_endpoint_rejects_an_empty_question(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="问题是空的"):
        client.predict("   ", api_name="/ask")


def test_concurrent_requests_get_their_own_answers(client, chain):
    questions = ["哪个区推出了“一楼一事办”？", "哪些区搞了企业代办服务？", "浦东人才港把审批时间压缩到了几天？"] * 3
    with ThreadPoolExecutor(len(questions)) as pool:
        results = list(pool.map(lambda q: client.predict(q, api_name="/ask"), questions))
    for question, result in zip(questions, results):
        assert result == expected(chain, question)


def raw_call(server: str, data: list) -> tuple[str, object]:
    """The API as plain HTTP, as curl would call it: (event, payload) of the result."""
    import urllib.request

    request = urllib.request.Request(f"{server}gradio_api/call/ask", json.dumps({"data": data}).encode(),
                                     {"Content-Type": "application/json"})
    event_id = json.load(urllib.request.urlopen(request, timeout=60))["event_id"]
    stream = urllib.request.urlopen(f"{server}gradio_api/call/ask/{event_id}", timeout=120).read().decode()
    event = next(line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: "))
    payload = next(line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("data: "))
    return event, json.loads(payload)


def test_raw_http_takes_only_the_question(server, chain):
    # It failed with "needed 4, got 1": the optional parameters had no defaults over plain HTTP.
    event, payload = raw_call(server, ["哪个区推出了“一楼一事办”？"])
    assert event == "complete" and payload[0] == expected(chain, "哪个区推出了“一楼一事办”？")


def test_failures_are_logged_by_hash_not_by_text(client, chain, monkeypatch, caplog, capfd):
    from gradio_client.exceptions import AppError

    secret = "我的手机号是13800000000，哪个区推出了“一楼一事办”？"

    def broken(query, *args, **kwargs):
        raise ValueError(f"cannot answer {query.raw}")

    monkeypatch.setattr(chain.answerer, "answer", broken)
    with caplog.at_level("ERROR", logger="rag.chat"), pytest.raises(AppError, match="内部错误"):
        client.predict(secret, api_name="/ask")
    logged = caplog.text + capfd.readouterr().err
    assert "sha256:" in logged and "ValueError" in logged
    assert "13800000000" not in logged


def test_uploads_are_refused(server):
    import urllib.error
    import urllib.request

    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 1_000_000 + b"\r\n--b--\r\n")
    request = urllib.request.Request(f"{server}gradio_api/upload", body,
                                     {"Content-Type": "multipart/form-data; boundary=b"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413


def test_config_shows_no_server_paths(server, cfg):
    import urllib.request

    config = urllib.request.urlopen(f"{server}config", timeout=60).read().decode()
    assert str(cfg.home) not in config and "索引位置" not in config


def test_settings_details_are_for_the_admin_only(chain, cfg):
    from dataclasses import replace
    from types import SimpleNamespace

    from rag.chain import AnswerChain
    from ui.app import is_admin, settings_html

    llm_cfg = replace(cfg, llm_base_url="http://10.0.0.7:8000/v1", llm_model="qwen", auth="boss:pw", admin="boss")
    llm_chain = AnswerChain(chain.answerer, llm_cfg, llm=object())
    for user, admin in [("boss", True), ("reader", False), (None, False)]:
        assert is_admin(SimpleNamespace(username=user), llm_cfg) is admin
        html = settings_html(llm_chain, llm_cfg, is_admin(SimpleNamespace(username=user), llm_cfg))
        assert "qwen" in html
        assert ("10.0.0.7" in html) is admin and (str(cfg.index_dir) in html) is admin
    assert not is_admin(SimpleNamespace(username="boss"), replace(llm_cfg, auth=""))  # no login, no admin


def test_the_server_keeps_the_inputs_of_a_bounded_number_of_sessions(chain, cfg, monkeypatch):
    """Each API call is a session whose inputs Gradio keeps: 10 minutes of load took the server from
    267 to 1,060 MB. The oldest sessions beyond the cap are dropped."""
    import importlib.util

    import ui.app
    from conftest import free_port

    monkeypatch.setattr(ui.app, "SESSIONS", 5)
    spec = importlib.util.spec_from_file_location("loadtest", Path(__file__).parents[1] / "bench" / "loadtest.py")
    loadtest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loadtest)
    demo = ui.app.build_app(chain, cfg)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port())
    try:
        client = loadtest.HttpClient(url)
        for _ in range(12):
            assert client.predict("哪个区推出了“一楼一事办”？", [{"role": "user", "content": "企" * 100_000}])["answer"]
        assert len(demo.app.state_holder.session_data) <= 5
    finally:
        demo.close()


# -- the HTML ---------------------------------------------------------------------------------
def test_document_and_user_text_is_escaped(tmp_path):
    (tmp_path / "x.txt").write_text("<b>原文</b>第一句。<i>被引用的一句。</i>\n", encoding="utf-8")
    cite = Citation(1, None, "c1", "<img src=x>", "集", 2021, "x.txt", (1, 1), "<i>被引用的一句。</i>")
    html = Renderer({}, tmp_path).answer(Answer("q", "**<u>区</u>** 说<i>x</i>[1]", True, [], [cite], "what_measure"))
    assert "<img" not in html and "<i>" not in html and "<u>" not in html and "<b>" not in html
    assert "&lt;img src=x&gt;" in html and "<strong>&lt;u&gt;区&lt;/u&gt;</strong>" in html
    assert "<mark>&lt;i&gt;被引用的一句。&lt;/i&gt;</mark>" in html
    assert "（文中未注明所属区）" in html and '<sup class="cite"' in html
    assert Renderer({}, tmp_path).user(XSS) == XSS.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# -- serving ----------------------------------------------------------------------------------
def test_serve_reads_the_environment_and_warns_when_open(monkeypatch, capsys):
    from types import SimpleNamespace

    import rag.chain
    import ui.app

    launched = {}
    monkeypatch.setattr(rag.chain, "build", lambda cfg, progress, **kw: None)
    monkeypatch.setattr(ui.app, "build_app", lambda chain, cfg: SimpleNamespace(launch=launched.update))
    monkeypatch.setattr(ui.app, "check_bindable", lambda host, port: None)  # 7999 may be someone's
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("RAG_SERVE_HOST", "0.0.0.0")
    monkeypatch.setenv("RAG_SERVE_PORT", "7999")
    monkeypatch.delenv("RAG_AUTH", raising=False)
    ui.app.serve()
    assert launched == {"server_name": "0.0.0.0", "server_port": 7999, "share": False, "auth": None}
    assert "未设登录" in capsys.readouterr().err

    monkeypatch.setenv("RAG_AUTH", "reader:secret")
    ui.app.serve()
    assert launched["auth"] == ("reader", "secret")
    ui.app.serve(host="127.0.0.1", port=8001, auth="admin:pw")
    assert launched["server_port"] == 8001 and launched["auth"] == ("admin", "pw")
    assert "未设登录" not in capsys.readouterr().err

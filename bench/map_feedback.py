"""Figures for the map and the feedback: page weight before/after, time to first paint of the map,
and the SQLite write p95 under a 20-client load.

    python bench/map_feedback.py [--before COMMIT] [--clients 20] [--rounds 10] [--time-limit 600]

Page weight: the bytes a fresh page load transfers (and their decoded size), in Chromium, with
every request that is not for the app refused; `--before` serves that commit's tree (exported with
`git archive` into a temp folder) the same way, for comparison. First paint of the map: from
navigation start to the frame after the first district shape is in the page, median of 5 loads.
Write p95: `clients` threads, each with its own gradio_client, ask the chat (`/ask`) and then store
feedback on the answer through FeedbackStore, the chat's own code path (one connection per write),
into a temp database; each write is timed. Bounded in count (clients × rounds) and time; only
127.0.0.1 is contacted. Writes bench/results/map_feedback.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loadtest import HOST, free_port, gold_items, percentile, start_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
LOADS = 5
# Set before the page's own scripts run: the time of the frame after the first district appears.
MAP_PAINT = """
new MutationObserver((_, observer) => {
  if (document.querySelector('#answer-map path[data-district]')) {
    observer.disconnect();
    requestAnimationFrame(() => requestAnimationFrame(() => { window.__mapPaint = performance.now(); }));
  }
}).observe(document, {childList: true, subtree: true});
"""


def page_figures(url: str, with_map: bool) -> dict:
    from playwright.sync_api import sync_playwright

    weights, paints, fcps = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for _ in range(LOADS):
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            context.add_init_script(MAP_PAINT)
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            sizes = {"transferred": 0, "decoded": 0, "requests": 0}
            # CDP's own counts: reading bodies would wait forever on Gradio's open event stream.
            cdp.on("Network.dataReceived", lambda e: sizes.update(decoded=sizes["decoded"] + e["dataLength"]))
            cdp.on("Network.loadingFinished", lambda e: sizes.update(
                transferred=sizes["transferred"] + e["encodedDataLength"], requests=sizes["requests"] + 1))
            page.goto(url, wait_until="load")
            page.wait_for_selector("#question textarea")
            if with_map:
                page.wait_for_function("window.__mapPaint !== undefined")
                paints.append(page.evaluate("window.__mapPaint"))
            fcps.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
            page.wait_for_timeout(2000)  # Gradio keeps a connection open: no network idle; late requests land here
            weights.append({"transferred_kb": sizes["transferred"] / 1024, "decoded_kb": sizes["decoded"] / 1024,
                            "requests": sizes["requests"]})
            context.close()
        browser.close()
    out = {"transferred_kb": round(statistics.median(w["transferred_kb"] for w in weights), 1),
           "decoded_kb": round(statistics.median(w["decoded_kb"] for w in weights), 1),
           "requests": weights[0]["requests"], "first_contentful_paint_ms": round(statistics.median(fcps))}
    if paints:
        out["map_first_paint_ms"] = {"median": round(statistics.median(paints)), "max": round(max(paints))}
    return out


def write_load(url: str, clients: int, rounds: int, time_limit: float) -> dict:
    from gradio_client import Client

    from rag.feedback import FeedbackStore

    items = [i for i in gold_items() if "history" not in i]
    store = FeedbackStore(Path(tempfile.mkdtemp(prefix="fb-load-")) / "feedback.sqlite3")
    deadline = time.monotonic() + time_limit
    writes, errors = [], []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client = Client(url, verbose=False)
        for r in range(rounds):
            if time.monotonic() > deadline:
                return
            item = items[(n * rounds + r) % len(items)]
            try:
                answer = client.predict(item["question"], api_name="/ask")
                t = time.perf_counter()
                store.record(item["question"], [], answer, "up" if r % 2 else "down", "bench", comment=f"client {n}")
                took = time.perf_counter() - t
            except Exception as e:  # counted, and the first few kept
                with lock:
                    errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                continue
            with lock:
                writes.append(took)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return {"clients": clients, "rounds": rounds, "planned_writes": clients * rounds, "writes": len(writes),
            "rows_in_db": len(store.rows()), "errors": len(errors), "error_samples": errors[:5],
            "write_ms": {"p50": round(percentile(writes, 50) * 1000, 1), "p95": round(percentile(writes, 95) * 1000, 1),
                         "max": round(max(writes, default=0) * 1000, 1)}}


def markdown(result: dict) -> str:
    before, after, load = result.get("before"), result["after"], result["feedback_writes"]
    rows = [("after (this tree)", after)] + ([(f"before ({result['before_commit'][:7]})", before)] if before else [])
    lines = ["# The map and the feedback: page weight, first paint, SQLite writes", "",
             f"{result['cpu_count']} cores, run {result['run_at']}, Chromium headless, {LOADS} fresh loads each "
             "(medians); every request not for the app is refused.", "",
             "| page | transferred KB | decoded KB | requests | first contentful paint | map first paint |",
             "|---|---|---|---|---|---|"]
    for name, f in rows:
        paint = f"{f['map_first_paint_ms']['median']} ms (max {f['map_first_paint_ms']['max']})" \
            if "map_first_paint_ms" in f else "—"
        lines.append(f"| {name} | {f['transferred_kb']} | {f['decoded_kb']} | {f['requests']} | "
                     f"{f['first_contentful_paint_ms']} ms | {paint} |")
    w = load["write_ms"]
    lines += ["", f"Feedback writes under load: {load['clients']} clients × {load['rounds']} rounds, each asking `/ask` "
              f"on {HOST} and then storing feedback on the answer: {load['writes']} / {load['planned_writes']} writes, "
              f"{load['rows_in_db']} rows in the database, {load['errors']} errors; write p50 {w['p50']} ms, "
              f"**p95 {w['p95']} ms**, max {w['max']} ms.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="a commit to compare the page weight with")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=600)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    result = {"cpu_count": os.cpu_count(), "run_at": time.strftime("%Y-%m-%d %H:%M")}
    port = free_port()
    server = start_server(port)
    print("serving", port, file=sys.stderr, flush=True)
    try:
        url = f"http://{HOST}:{port}/"
        result["after"] = page_figures(url, with_map=True)
        print("page (after):", result["after"], file=sys.stderr, flush=True)
        result["feedback_writes"] = write_load(url, args.clients, args.rounds, args.time_limit)
    finally:
        server.terminate()
        server.wait(30)
    if args.before:
        with tempfile.TemporaryDirectory(prefix="before-") as tree:
            archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
            port = free_port()
            server = start_server(port, root=Path(tree))
            try:
                result["before"] = page_figures(f"http://{HOST}:{port}/", with_map=False)
                print("page (before):", result["before"], file=sys.stderr, flush=True)
            finally:
                server.terminate()
                server.wait(30)
        result["before_commit"] = args.before
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "map_feedback.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (args.out / "map_feedback.md").write_text(markdown(result), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    load = result["feedback_writes"]
    return 1 if load["errors"] or load["rows_in_db"] != load["writes"] else 0


if __name__ == "__main__":
    sys.exit(main())

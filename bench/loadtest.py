"""Load test of the chat's `ask` endpoint: concurrent gradio_client clients, several rounds each.

    python bench/loadtest.py [--clients 20] [--rounds 10] [--time-limit 900]

First `rag ask --batch -` answers every gold question once, in its own process: the expected
answers. Then `rag serve` starts on a free port of 127.0.0.1 (never another address), and each
client, with its own connection, asks its share of the gold questions every round, the shares
rotating between rounds. Each reply must equal the expected answer exactly. Counts are bounded
(clients × rounds × questions) and so is the time: past --time-limit no new request starts.
Writes bench/results/loadtest.json and .md; exits 1 on any error, mismatch or unfinished request.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "eval" / "gold.jsonl"
HOST = "127.0.0.1"
BATCH_ONLY = ("id", "latency_ms")  # fields `rag ask --batch` adds to the Answer JSON


def gold_items() -> list[dict]:
    lines = GOLD.read_text(encoding="utf-8").splitlines()
    return [{k: item[k] for k in ("id", "question", "history") if k in item}
            for item in map(json.loads, filter(str.strip, lines))]


def expected_answers(items: list[dict]) -> tuple[dict[str, dict], list[float]]:
    """(id → Answer JSON, per-question seconds) from `rag ask --batch -`, one process of its own."""
    stdin = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    out = subprocess.run([sys.executable, "-m", "rag.cli", "ask", "--batch", "-"], input=stdin.encode(),
                         capture_output=True, check=True, cwd=ROOT).stdout.decode()
    rows = [json.loads(line) for line in out.splitlines()]
    return ({row["id"]: {k: v for k, v in row.items() if k not in BATCH_ONLY} for row in rows},
            [row["latency_ms"] / 1000 for row in rows])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(port: int, timeout: float = 600) -> subprocess.Popen:
    """`rag serve` on 127.0.0.1:port, returned once the page answers."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--host", HOST, "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"rag serve exited with {server.returncode}")
        try:
            urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=5)
            return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"rag serve did not answer within {timeout:.0f} s")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else 0.0


def hammer(url: str, items: list[dict], expected: dict[str, dict], clients: int, rounds: int,
           time_limit: float) -> dict:
    """`clients` threads, each with its own gradio_client.Client, ask every question once per round."""
    from gradio_client import Client

    if urlsplit(url).hostname != HOST:
        raise SystemExit(f"only {HOST} is load-tested, not {url}")
    deadline = time.monotonic() + time_limit
    latencies, errors, mismatches = [], [], []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client = Client(url, verbose=False)
        for r in range(rounds):
            for item in items[(n + r) % clients::clients]:  # shares rotate between rounds
                if time.monotonic() > deadline:
                    return
                t = time.perf_counter()
                try:
                    got = client.predict(item["question"], item.get("history"), api_name="/ask")
                except Exception as e:  # the count is the result; the first few messages are kept
                    with lock:
                        errors.append(f"{item['id']}: {type(e).__name__}: {str(e)[:200]}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t)
                    if got != expected[item["id"]]:
                        mismatches.append(item["id"])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    elapsed = time.perf_counter() - started
    planned = rounds * len(items)
    done = len(latencies) + len(errors)
    return {"clients": clients, "rounds": rounds, "questions": len(items), "planned_requests": planned,
            "completed_requests": done, "timed_out": done < planned, "time_limit_s": time_limit,
            "errors": len(errors), "mismatches": len(mismatches),
            "error_samples": errors[:5], "mismatched_ids": sorted(set(mismatches))[:20],
            "elapsed_s": round(elapsed, 1), "throughput_rps": round(done / elapsed, 2),
            "latency_ms": {"p50": round(percentile(latencies, 50) * 1000), "p95": round(percentile(latencies, 95) * 1000),
                           "max": round(max(latencies, default=0) * 1000)}}


def markdown(result: dict) -> str:
    lat = result["latency_ms"]
    return "\n".join([
        "# Load test: the chat's `ask` endpoint", "",
        f"{result['clients']} concurrent `gradio_client` clients × {result['rounds']} rounds over the "
        f"{result['questions']} gold questions (eval/gold.jsonl), against `rag serve` on {HOST}; "
        f"{result['cpu_count']} cores, run {result['run_at']}. Every reply is compared with what "
        "`rag ask --batch -` gave for the same question in another process.", "",
        "| requests (done / planned) | errors | mismatches | p50 | p95 | max | throughput | wall time |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result['completed_requests']} / {result['planned_requests']} | {result['errors']} | "
        f"{result['mismatches']} | {lat['p50']} ms | {lat['p95']} ms | {lat['max']} ms | "
        f"{result['throughput_rps']} req/s | {result['elapsed_s']} s |", "",
        f"One at a time, in one process (`rag ask --batch`), the chain takes p50 "
        f"{result['serial_latency_ms']['p50']} ms, p95 {result['serial_latency_ms']['p95']} ms per question.", "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds; no request starts after it")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    items = gold_items()
    # Before the server starts: this also builds the index if it is missing, so the two never race.
    expected, serial = expected_answers(items)
    port = free_port()
    server = start_server(port)
    try:
        result = hammer(f"http://{HOST}:{port}/", items, expected, args.clients, args.rounds, args.time_limit)
    finally:
        server.terminate()
        server.wait(30)
    result |= {"cpu_count": os.cpu_count(), "run_at": time.strftime("%Y-%m-%d %H:%M"),
               "serial_latency_ms": {"p50": round(percentile(serial, 50) * 1000), "p95": round(percentile(serial, 95) * 1000)}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loadtest.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (args.out / "loadtest.md").write_text(markdown(result), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 1 if result["errors"] or result["mismatches"] or result["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())

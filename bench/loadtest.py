"""Load test of the chat's `ask` endpoint: concurrent gradio_client clients, several rounds each.

    python bench/loadtest.py [--clients 20] [--rounds 10] [--time-limit 900]
    python bench/loadtest.py --hostile [--rounds 2] [--soak 600]

With --hostile, three runs against one server: `clients` normal clients; `clients - 1` normal
clients alone; the same `clients - 1` beside one hostile client that sends nothing but the
costliest requests the budget lets through (a question past the 2,000-character cap, a 1 MB
history item, 100,000 combining marks). The normal clients' p95 beside the hostile one is compared
with their p95 alone. --soak then runs the hostile mix for that many seconds. Throughout, the
server's RSS and the load average are sampled every 5 s.

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


def start_server(port: int, timeout: float = 600, root: Path = ROOT) -> subprocess.Popen:
    """`rag serve` of the checkout at `root` on 127.0.0.1:port, returned once the page answers."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--host", HOST, "--port", str(port)],
                              cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


# The costliest requests that pass the request budget (rag.chain.budget), in turn.
HOSTILE = [
    {"question": "哪个区推出了“一楼一事办”？" + "营商环境改革" * 400},
    {"question": "它取得了什么成效？", "history": [{"role": "user", "content": "哪个区推出了“一楼一事办”？" + "企" * 1_000_000},
                                           {"role": "assistant", "content": "虹口区" * 100_000}]},
    {"question": "\u0301\u0316" * 50_000 + "哪个区推出了“一楼一事办”？"},
    {"question": "那徐汇区呢？", "history": [{"role": "user", "content": "静安区在办税方面有什么做法？" * 600}] * 40},
]


class Sampler(threading.Thread):
    """The server's RSS (MB) and the 1-minute load average, every `every` seconds, until stopped."""

    def __init__(self, pid: int, every: float = 5):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.done = pid, every, [], threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append({"t_s": round(time.monotonic() - self.started), "rss_mb": rss_mb(self.pid),
                                 "load1": os.getloadavg()[0]})
            self.done.wait(self.every)

    def stop(self) -> list[dict]:
        self.done.set()
        self.join()
        return self.samples


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return round(kb / 1024, 1)


class HttpClient:
    """The `ask` API over plain HTTP, as curl or any program would call it: one POST, then the
    result's event stream. A tenth of gradio_client's CPU per request, which on a 2-core machine
    otherwise takes more of the cores than the server it measures."""

    def __init__(self, url: str):
        self.url = url

    def predict(self, question: str, history: list | None = None, api_name: str = "/ask"):
        post = urllib.request.Request(f"{self.url}gradio_api/call{api_name}",
                                      json.dumps({"data": [question, history]}).encode(),
                                      {"Content-Type": "application/json"})
        event_id = json.load(urllib.request.urlopen(post, timeout=600))["event_id"]
        with urllib.request.urlopen(f"{self.url}gradio_api/call{api_name}/{event_id}", timeout=600) as stream:
            event = None
            for line in stream:
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("complete", "error"):
                    data = json.loads(line[6:])
                    if event == "error":
                        raise RuntimeError(f"server error: {data}")
                    return data[0]
        raise RuntimeError("the event stream ended without a result")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else 0.0


def hammer(url: str, items: list[dict], expected: dict[str, dict], clients: int, rounds: int,
           time_limit: float, hostile: int = 0, http: bool = False) -> dict:
    """`clients` threads, each with its own gradio_client.Client (or HttpClient), ask every question
    once per round. `hostile` more threads send HOSTILE requests, one after another, for as long as
    the others run."""
    from gradio_client import Client

    def connect():
        return HttpClient(url) if http else Client(url, verbose=False)

    if urlsplit(url).hostname != HOST:
        raise SystemExit(f"only {HOST} is load-tested, not {url}")
    deadline = time.monotonic() + time_limit
    latencies, errors, mismatches, hostile_latencies = [], [], [], []
    lock = threading.Lock()
    normal_done = threading.Event()

    def attacker(n: int) -> None:
        client = connect()
        for i in range(10**6):
            if normal_done.is_set() or time.monotonic() > deadline:
                return
            request = HOSTILE[(n + i) % len(HOSTILE)]
            t = time.perf_counter()
            try:
                got = client.predict(request["question"], request.get("history"), api_name="/ask")
                assert got["answer"], got
            except Exception as e:  # an error here is a finding too, counted with the rest
                with lock:
                    errors.append(f"hostile: {type(e).__name__}: {str(e)[:200]}")
                continue
            with lock:
                hostile_latencies.append(time.perf_counter() - t)

    def worker(n: int) -> None:
        client = connect()
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
    with ThreadPoolExecutor(clients + hostile) as pool:
        attackers = [pool.submit(attacker, n) for n in range(hostile)]
        list(pool.map(worker, range(clients)))
        normal_done.set()
        for a in attackers:
            a.result()
    elapsed = time.perf_counter() - started
    planned = rounds * len(items)
    done = len(latencies) + len([e for e in errors if not e.startswith("hostile")])
    return {"clients": clients, "client": "http" if http else "gradio_client", "hostile_clients": hostile,
            "rounds": rounds, "questions": len(items),
            "planned_requests": planned, "completed_requests": done, "timed_out": done < planned,
            "time_limit_s": time_limit, "errors": len(errors), "mismatches": len(mismatches),
            "error_samples": errors[:5], "mismatched_ids": sorted(set(mismatches))[:20],
            "elapsed_s": round(elapsed, 1), "throughput_rps": round(done / elapsed, 2),
            "latency_ms": latency_ms(latencies), "hostile_requests": len(hostile_latencies),
            "hostile_latency_ms": latency_ms(hostile_latencies)}


def latency_ms(seconds: list[float]) -> dict:
    return {"p50": round(percentile(seconds, 50) * 1000), "p95": round(percentile(seconds, 95) * 1000),
            "max": round(max(seconds, default=0) * 1000)}


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


def hostile_markdown(runs: dict, samples: list[dict], meta: dict) -> str:
    rows = []
    for name, r in runs.items():
        lat, hl = r["latency_ms"], r["hostile_latency_ms"]
        hostile = f"{r['hostile_requests']}, p50 {hl['p50']} / p95 {hl['p95']} ms" if r["hostile_clients"] else "—"
        rows.append(f"| {name} | {r['clients']} + {r['hostile_clients']} | {r['completed_requests']} | {r['errors']} | "
                    f"{r['mismatches']} | {lat['p50']} / {lat['p95']} / {lat['max']} ms | {r['throughput_rps']} /s | "
                    f"{hostile} | {r['elapsed_s']} s | {r['server_cpu_s']} s / {r['client_cpu_s']} s |")
    alone, beside = runs["normal alone"]["latency_ms"]["p95"], runs["beside the hostile client"]["latency_ms"]["p95"]
    rss = [x["rss_mb"] for x in samples]
    load = [x["load1"] for x in samples]
    by_minute = {}
    for x in samples:
        by_minute.setdefault(x["t_s"] // 60, x)
    return "\n".join([
        "# Load test with a hostile client: the chat's `ask` endpoint", "",
        f"`python bench/loadtest.py --hostile` against `rag serve` on {HOST}; {meta['cpu_count']} cores shared with "
        f"other work, run {meta['run_at']} (load average during the run {min(load):.1f}–{max(load):.1f}). "
        "Normal clients ask the gold questions and every reply must equal `rag ask --batch`'s; the hostile "
        "client sends only the costliest requests the budget lets through (bench/loadtest.py HOSTILE).", "",
        "| run | clients normal + hostile | normal requests | errors | mismatches | normal p50 / p95 / max | "
        "normal throughput | hostile requests, latency | wall time | CPU: server / clients |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"One at a time, in one process (`rag ask --batch`), the chain takes p50 {meta['serial_latency_ms']['p50']} ms, "
        f"p95 {meta['serial_latency_ms']['p95']} ms per question.", "",
        f"Normal clients' p95 beside the hostile client: {beside} ms against {alone} ms alone, "
        f"**{beside / max(alone, 1):.2f}×** (target ≤ 1.5×).", "",
        f"Server RSS over the whole session ({samples[-1]['t_s']} s, every 5 s): start {rss[0]} MB, "
        f"min {min(rss)}, max {max(rss)}, end {rss[-1]} MB.", "",
        "| minute | RSS MB | load average (1 min) |", "|---|---|---|",
        *[f"| {m} | {x['rss_mb']} | {x['load1']:.2f} |" for m, x in sorted(by_minute.items())], "",
    ])


def write(stem: Path, data: dict, md: str) -> None:
    stem.with_suffix(".json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(md, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds; no request starts after it")
    parser.add_argument("--hostile", action="store_true",
                        help="also run clients-1 normal clients alone and beside a hostile one")
    parser.add_argument("--soak", type=float, default=0, help="then run the hostile mix for this many seconds")
    parser.add_argument("--http", action="store_true", help="clients call the API over plain HTTP, not gradio_client")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    items = gold_items()
    # Before the server starts: this also builds the index if it is missing, so the two never race.
    expected, serial = expected_answers(items)
    port = free_port()
    server = start_server(port)
    url = f"http://{HOST}:{port}/"
    sampler = Sampler(server.pid)
    sampler.start()
    runs = {}

    def run(name: str, *hammer_args, **kwargs) -> None:
        # Where the CPU went: the server, and this process's clients on the same cores.
        server_cpu, own_cpu = cpu_s(server.pid), sum(os.times()[:2])
        runs[name] = hammer(url, items, expected, *hammer_args, http=args.http, **kwargs)
        runs[name] |= {"server_cpu_s": round(cpu_s(server.pid) - server_cpu, 1),
                       "client_cpu_s": round(sum(os.times()[:2]) - own_cpu, 1)}

    try:
        run("normal", args.clients, args.rounds, args.time_limit)
        if args.hostile:
            run("normal alone", args.clients - 1, args.rounds, args.time_limit)
            run("beside the hostile client", args.clients - 1, args.rounds, args.time_limit, hostile=1)
        if args.soak:  # for a fixed time, not a number of rounds
            run("soak", args.clients - 1, 10**6, args.soak, hostile=1)
    finally:
        samples = sampler.stop()
        server.terminate()
        server.wait(30)
    meta = {"cpu_count": os.cpu_count(), "run_at": time.strftime("%Y-%m-%d %H:%M"),
            "serial_latency_ms": latency_ms(serial)}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.hostile:
        data = {**meta, "runs": runs, "samples": samples}
        write(args.out / "loadtest-hostile", data, hostile_markdown(runs, samples, meta))
    else:
        result = runs["normal"] | meta
        write(args.out / "loadtest", result, markdown(result))
    shown = ("errors", "mismatches", "throughput_rps", "latency_ms", "hostile_latency_ms", "elapsed_s", "server_cpu_s",
             "client_cpu_s")
    print(json.dumps({name: {k: r[k] for k in shown}
                      for name, r in runs.items()}, ensure_ascii=False, indent=2))
    failed = any(r["errors"] or r["mismatches"] or (r["timed_out"] and name != "soak") for name, r in runs.items())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Signed LINE webhooks per second, end to end, next to a bare signature-checking endpoint.

Each server runs under uvicorn in its own child process on 127.0.0.1. This process sends the
webhooks with httpx and hosts the fake LINE API. The LINE figure counts replies that reached
the fake API (signature check, parse, core, SQLite, Messaging API call). The bare figure
counts 200 responses from a FastAPI route that only validates X-Line-Signature. Their ratio
shows what the channel costs on top of the web stack (goal: at least 0.5).

The server CPU time per webhook is printed too, because it depends far less on other load
on the machine. When this process uses a whole CPU, the load generator is the limit, not
the server.

    python bench/bench_line.py [--requests N] [--rounds R] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from fastapi import FastAPI, Request, Response
from linebot.v3.webhook import SignatureValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.line_api import REPLY, FakeLineApi  # noqa: E402

SECRET = "bench-channel-secret"
TOKEN = "bench-access-token"
QUERIES = [
    "ご利用いただけないカードです",
    "暗証番号が違います",
    "カードが読み取れません",
    "証明書の発行に失敗しました",
    "住民票が取れない",
]


def sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


def webhook(index: int) -> bytes:
    event = {
        "type": "message",
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": f"U{index:08d}"},
        "webhookEventId": uuid.uuid4().hex.upper(),
        "deliveryContext": {"isRedelivery": False},
        "replyToken": uuid.uuid4().hex,
        "message": {
            "type": "text",
            "id": str(index),
            "quoteToken": uuid.uuid4().hex,
            "text": QUERIES[index % len(QUERIES)],
        },
    }
    return json.dumps({"destination": "Ubot", "events": [event]}, ensure_ascii=False).encode()


# -- servers (child process) --------------------------------------------------------------------


def bare_app() -> FastAPI:
    validator = SignatureValidator(SECRET)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/line/webhook")
    async def webhook(request: Request) -> Response:
        body = await request.body()
        signature = request.headers.get("x-line-signature") or ""
        if not validator.validate(body.decode("utf-8"), signature):
            return Response(status_code=400)
        return Response(status_code=200)

    return app


def line_app(api_url: str, db_dir: str) -> Any:
    from adapters.server import create_app
    from bot.settings import Settings

    settings = Settings(
        line_channel_secret=SECRET,
        line_channel_access_token=TOKEN,
        line_api_url=api_url,
        line_data_api_url=api_url,
        db_path=Path(db_dir) / "bench.sqlite3",
    )
    return create_app(settings)


def serve(kind: str, api_url: str, db_dir: str, ports: Any) -> None:
    import uvicorn

    app = line_app(api_url, db_dir) if kind == "line" else bare_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    ports.put(sock.getsockname()[1])
    server.run(sockets=[sock])


# -- load (this process) ------------------------------------------------------------------------


async def send_all(url: str, bodies: list[bytes], concurrency: int) -> list[int]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, trust_env=False, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                headers = {"content-type": "application/json", "x-line-signature": sign(body)}
                response = await client.post("/line/webhook", content=body, headers=headers)
                statuses.append(response.status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def wait_until_up(url: str, deadline: float) -> None:
    with httpx.Client(base_url=url, trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
    raise TimeoutError(f"server at {url} did not start")


class Server:
    """One uvicorn child process serving the `kind` app ("bare" or "line")."""

    def __init__(self, kind: str, api_url: str, db_dir: str) -> None:
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        self.kind = kind
        self._child = context.Process(
            target=serve, args=(kind, api_url, db_dir, ports), daemon=True
        )
        self._child.start()
        self.pid = self._child.pid or 0
        self.url = f"http://127.0.0.1:{ports.get(timeout=60)}"
        wait_until_up(self.url, time.monotonic() + 60)

    def close(self) -> None:
        self._child.terminate()
        self._child.join(timeout=10)


@dataclass
class Run:
    rate: float  # webhooks per second, wall clock
    server_cpu_ms: float  # CPU time of the server process per webhook
    client_cpu: float  # share of one CPU used by this process (load and fake API)


def measure(server: Server, api: FakeLineApi, start: int, count: int, args: Any) -> Run:
    """Send `count` webhooks and time them until the last one is done."""
    before = len(api.calls_to(REPLY))
    bodies = [webhook(i) for i in range(start, start + count)]
    server_cpu, client_cpu = _cpu_seconds(server.pid), _cpu_seconds(os.getpid())
    started = time.perf_counter()
    statuses = asyncio.run(send_all(server.url, bodies, args.concurrency))
    if server.kind == "line":
        api.wait_calls(REPLY, before + count, timeout=args.limit)
    elapsed = time.perf_counter() - started
    server_cpu = _cpu_seconds(server.pid) - server_cpu
    client_cpu = _cpu_seconds(os.getpid()) - client_cpu
    if statuses.count(200) != count:
        raise RuntimeError(
            f"{server.kind}: {count - statuses.count(200)} webhooks got no 200 response"
        )
    return Run(count / elapsed, server_cpu / count * 1000, client_cpu / elapsed)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="webhooks per run (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server (default 3)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight (default 16)"
    )
    parser.add_argument("--limit", type=float, default=120, help="seconds allowed per run")
    args = parser.parse_args()

    runs: dict[str, list[Run]] = {"bare": [], "line": []}
    with FakeLineApi(TOKEN) as api, tempfile.TemporaryDirectory() as db_dir:
        servers = [Server("bare", api.url, db_dir), Server("line", api.url, db_dir)]
        try:
            for server in servers:
                measure(server, api, -1000, 50, args)  # warm-up: connections, caches
            # Rounds alternate between the servers so that other load on the machine
            # affects both figures alike.
            for round_ in range(args.rounds):
                for server in servers:
                    start = round_ * args.requests
                    runs[server.kind].append(measure(server, api, start, args.requests, args))
        finally:
            for server in servers:
                server.close()

    bare, full = _median(runs["bare"]), _median(runs["line"])
    _report("bare signature check", bare)
    _report("LINE end to end", full)
    print(f"ratio:                {full.rate / bare.rate:7.2f} (goal >= 0.5)")
    print(f"runs, webhooks/s: bare {_rates(runs['bare'])}; LINE {_rates(runs['line'])}")
    print(
        f"medians of {args.rounds} runs of {args.requests} webhooks, {args.concurrency} in "
        f"flight, 127.0.0.1, {os.cpu_count()} CPUs"
    )


def _report(name: str, run: Run) -> None:
    print(
        f"{name + ':':22}{run.rate:7.1f} webhooks/s, server CPU {run.server_cpu_ms:.2f} ms per "
        f"webhook, load and fake API {run.client_cpu:.0%} of a CPU"
    )


def _median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rate for r in runs),
        statistics.median(r.server_cpu_ms for r in runs),
        statistics.median(r.client_cpu for r in runs),
    )


def _rates(runs: list[Run]) -> str:
    return ", ".join(f"{r.rate:.0f}" for r in runs)


if __name__ == "__main__":
    main()

"""A fake LINE Messaging API (api.line.me and api-data.line.me) on 127.0.0.1.

It serves the endpoints the LINE channel uses over real HTTP, so line-bot-sdk's own client
talks to it, and it records every request. Where it matters, it responds the way LINE does.
A reply token works once, and an expired one gives 400 "Invalid reply token". A push retry
key that was already accepted gives 409, and a payload over LINE's limits gives 400. Tests can
queue failures (400, 429, 5xx) or slow answers for the next calls to a path.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "/v2/bot/message/reply"
PUSH = "/v2/bot/message/push"
LOADING = "/v2/bot/chat/loading/start"
CONTENT_PREFIX = "/v2/bot/message/"


@dataclass
class Call:
    """One request the fake received, with the status it returned."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class _Failure:
    path: str
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def payload_problems(body: Any) -> list[str]:
    """List the ways a reply or push body breaks LINE's message limits."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return ["messages is missing"]
    problems = []
    outgoing = body["messages"]
    if not 1 <= len(outgoing) <= 5:
        problems.append(f"{len(outgoing)} messages, expected 1 to 5")
    for index, message in enumerate(outgoing):
        text = message.get("text", "")
        if message.get("type") == "text" and not 1 <= _utf16_len(text) <= 5000:
            problems.append(f"messages[{index}].text has {_utf16_len(text)} UTF-16 units")
        items = (message.get("quickReply") or {}).get("items", [])
        if len(items) > 13:
            problems.append(f"messages[{index}].quickReply has {len(items)} items")
        for item in items:
            action = item.get("action", {})
            for name in ("data", "displayText", "text"):
                if _utf16_len(action.get(name, "")) > 300:
                    problems.append(f"messages[{index}] action {name} is over 300")
    return problems


class FakeLineApi:
    """Record requests like LINE's API servers and respond to them; use as a context manager."""

    def __init__(self, access_token: str) -> None:
        self.access_token = access_token
        self.calls: list[Call] = []
        self.content: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._used_tokens: set[str] = set()
        self._expired_tokens: set[str] = set()
        self._retry_keys: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeLineApi:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- test controls -------------------------------------------------------------------

    def fail_next(
        self,
        path: str,
        status: int,
        count: int = 1,
        message: str = "error",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Fail the next `count` requests to `path` with `status` and LINE's error body."""
        with self._lock:
            for _ in range(count):
                self._failures.append(_Failure(path, status, message, dict(headers or {})))

    def delay_next(self, path: str, seconds: float) -> None:
        """Wait `seconds` before handling the next request to `path` normally."""
        with self._lock:
            self._failures.append(_Failure(path, 0, "", delay=seconds))

    def expire(self, reply_token: str) -> None:
        with self._lock:
            self._expired_tokens.add(reply_token)

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    def wait_for(
        self, condition: Callable[[list[Call]], bool], timeout: float = 10.0
    ) -> list[Call]:
        """Poll the recorded calls until `condition` holds; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                calls = list(self.calls)
            if condition(calls):
                return calls
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {timeout} s; calls: {calls}")
            time.sleep(0.01)

    def wait_calls(self, path: str, count: int, timeout: float = 10.0) -> list[Call]:
        calls = self.wait_for(lambda cs: sum(c.path == path for c in cs) >= count, timeout)
        return [c for c in calls if c.path == path]

    # -- request handling ----------------------------------------------------------------

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.path == path:
                    self._failures.remove(failure)
                    return failure
        return None

    def handle(self, call: Call) -> tuple[int, dict[str, str], bytes]:
        failure = self._take_failure(call.path)
        if failure is not None and failure.delay:
            time.sleep(failure.delay)
            failure = None
        if failure is not None:
            return failure.status, failure.headers, _error(failure.message)
        if call.headers.get("authorization") != f"Bearer {self.access_token}":
            return 401, {}, _error("Authentication failed")
        if call.method == "POST" and call.path == REPLY:
            return self._reply(call.body)
        if call.method == "POST" and call.path == PUSH:
            return self._push(call.body, call.headers.get("x-line-retry-key"))
        if call.method == "POST" and call.path == LOADING:
            return 202, {}, b"{}"
        if call.method == "GET" and call.path.startswith(CONTENT_PREFIX):
            message_id = call.path.removeprefix(CONTENT_PREFIX).removesuffix("/content")
            if message_id in self.content:
                return 200, {"content-type": "image/jpeg"}, self.content[message_id]
        return 404, {}, _error("Not found")

    def _reply(self, body: Any) -> tuple[int, dict[str, str], bytes]:
        problems = payload_problems(body)
        if problems:
            return 400, {}, _error("The request body has errors", problems)
        token = body.get("replyToken")
        with self._lock:
            if token in self._used_tokens or token in self._expired_tokens:
                return 400, {}, _error("Invalid reply token")
            self._used_tokens.add(token)
        return 200, {}, _sent(len(body["messages"]))

    def _push(self, body: Any, retry_key: str | None) -> tuple[int, dict[str, str], bytes]:
        problems = payload_problems(body)
        if problems or not body.get("to"):
            return 400, {}, _error("The request body has errors", problems)
        if retry_key is not None:
            with self._lock:
                if retry_key in self._retry_keys:
                    headers = {"x-line-accepted-request-id": str(uuid.uuid4())}
                    return 409, headers, _error("The retry key is already accepted")
                self._retry_keys.add(retry_key)
        return 200, {}, _sent(len(body["messages"]))


def _error(message: str, details: list[str] | None = None) -> bytes:
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = [{"message": d} for d in details]
    return json.dumps(body).encode()


def _sent(count: int) -> bytes:
    sent = [
        {"id": str(uuid.uuid4().int)[:18], "quoteToken": uuid.uuid4().hex} for _ in range(count)
    ]
    return json.dumps({"sentMessages": sent}).encode()


def _handler_for(api: FakeLineApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes; without TCP_NODELAY each keep-alive
            # call would stall on the client's delayed ACK (about 40 ms on Linux).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            headers = {k.lower(): v for k, v in self.headers.items()}
            call = Call(method=method, path=self.path, headers=headers, body=body)
            status, extra, content = api.handle(call)
            call.status = status
            with api._lock:
                api.calls.append(call)
            self.send_response(status)
            self.send_header("content-type", extra.pop("content-type", "application/json"))
            self.send_header("content-length", str(len(content)))
            self.send_header("x-line-request-id", str(uuid.uuid4()))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

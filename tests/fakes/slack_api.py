"""A fake Slack Web API and Socket Mode endpoint on 127.0.0.1, recording every call.

It runs an aiohttp server on its own event loop in a background thread, so the official
clients under test (slack_sdk's WebClient, WebhookClient and the built-in Socket Mode client)
talk to it over real HTTP and a real WebSocket. Message payloads are checked against Slack's
Block Kit limits and rejected with `invalid_blocks`, as Slack would; so are modals passed to
views.open. It also serves shared files at /files/<name> to requests with the bot token.
Messages it accepted (and later updated) are kept, so conversations.history returns them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

BOT_USER_ID = "UMADOGUCHI"
BOT_ID = "BMADOGUCHI"
TEAM_ID = "T0CITY"

MESSAGE_METHODS = {"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"}
FILE_DOWNLOAD = "file"


@dataclass
class Call:
    """One request the fake received: the API method (or "response_url") and its body."""

    method: str
    body: dict[str, Any]
    authorization: str = ""
    problems: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


def block_kit_problems(payload: dict[str, Any]) -> list[str]:
    """List the ways a message payload breaks Slack's limits (empty when it is valid)."""
    problems: list[str] = []
    if not str(payload.get("text") or "").strip():
        problems.append("top-level text is missing")
    blocks = payload.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks, more than 50")
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    if len(block_ids) != len(set(block_ids)):
        problems.append("block_id values are not unique")
    for index, block in enumerate(blocks):
        problems.extend(f"block {index}: {p}" for p in _block_problems(block))
    return problems


def view_problems(view: dict[str, Any]) -> list[str]:
    """List the ways a modal view breaks Slack's limits (empty when it is valid)."""
    problems: list[str] = []
    if view.get("type") != "modal":
        problems.append("view type must be modal")
    for name in ("title", "submit", "close"):
        text = view.get(name) or {}
        if not text and name != "title":
            continue
        if text.get("type") != "plain_text" or not 1 <= len(text.get("text", "")) <= 24:
            problems.append(f"{name} must be plain_text of 1 to 24 characters")
    if len(str(view.get("private_metadata", ""))) > 3000:
        problems.append("private_metadata longer than 3000")
    if len(str(view.get("callback_id", ""))) > 255:
        problems.append("callback_id longer than 255")
    blocks = view.get("blocks") or []
    if not 1 <= len(blocks) <= 100:
        problems.append(f"{len(blocks)} blocks, allowed 1 to 100")
    for index, block in enumerate(blocks):
        if block.get("type") == "input":
            problems.extend(f"block {index}: {p}" for p in _input_problems(block))
        else:
            problems.extend(f"block {index}: {p}" for p in _block_problems(block))
    return problems


def _input_problems(block: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    label = block.get("label") or {}
    if label.get("type") != "plain_text" or not 1 <= len(label.get("text", "")) <= 2000:
        problems.append("input label must be plain_text of 1 to 2000 characters")
    element = block.get("element") or {}
    kind = element.get("type")
    if kind == "plain_text_input":
        if len(str(element.get("initial_value", ""))) > 3000:
            problems.append("initial_value longer than 3000")
    elif kind == "static_select":
        groups = element.get("option_groups")
        options = [o for g in groups for o in g["options"]] if groups else element["options"]
        if not 1 <= len(options) <= 100:
            problems.append(f"static_select has {len(options)} options, allowed 1 to 100")
        for option in options:
            if not 1 <= len(option["text"]["text"]) <= 75:
                problems.append("option text must have 1 to 75 characters")
            if not 1 <= len(option["value"]) <= 150:
                problems.append("option value must have 1 to 150 characters")
        if groups and not all(1 <= len(g["label"]["text"]) <= 75 for g in groups):
            problems.append("option group label must have 1 to 75 characters")
    else:
        problems.append(f"unexpected input element {kind!r}")
    return problems


def _block_problems(block: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    kind = block.get("type")
    if len(str(block.get("block_id", ""))) > 255:
        problems.append("block_id longer than 255")
    if kind == "section":
        text = block.get("text", {}).get("text", "")
        if not 1 <= len(text) <= 3000:
            problems.append(f"section text has {len(text)} characters, allowed 1 to 3000")
    elif kind == "header":
        text = block.get("text", {})
        if text.get("type") != "plain_text" or not 1 <= len(text.get("text", "")) <= 150:
            problems.append("header must be plain_text of 1 to 150 characters")
    elif kind == "context":
        elements = block.get("elements", [])
        if not 1 <= len(elements) <= 10:
            problems.append(f"context has {len(elements)} elements, allowed 1 to 10")
        for element in elements:
            if not 1 <= len(element.get("text", "")) <= 3000:
                problems.append("context text must have 1 to 3000 characters")
    elif kind == "actions":
        elements = block.get("elements", [])
        if not 1 <= len(elements) <= 25:
            problems.append(f"actions has {len(elements)} elements, allowed 1 to 25")
        action_ids = [e.get("action_id") for e in elements]
        if len(action_ids) != len(set(action_ids)):
            problems.append("action_id values are not unique within the block")
        for element in elements:
            problems.extend(_button_problems(element))
    else:
        problems.append(f"unexpected block type {kind!r}")
    return problems


def _button_problems(button: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    text = button.get("text", {})
    if text.get("type") != "plain_text" or not 1 <= len(text.get("text", "")) <= 75:
        problems.append("button text must be plain_text of 1 to 75 characters")
    if len(str(button.get("value", ""))) > 2000:
        problems.append("button value longer than 2000")
    if not 1 <= len(str(button.get("action_id", ""))) <= 255:
        problems.append("button action_id must have 1 to 255 characters")
    return problems


class FakeSlack:
    """The fake server. Use as a context manager; `api_url` is the WebClient base_url."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.acks: list[dict[str, Any]] = []
        # Shared files by name: (content, whether to send it without a Content-Length).
        self.files: dict[str, tuple[bytes, bool]] = {}
        self.socket_connections = 0
        # Channel messages by (channel, ts), as chat.postMessage and chat.update left them.
        self.posted: dict[tuple[str, str], dict[str, Any]] = {}
        self._rate_limited: set[str] = set()
        self._condition = threading.Condition()
        self._ts = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._socket: web.WebSocketResponse | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/socket", self._websocket)
        app.router.add_get("/files/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str = "cmd") -> str:
        return f"{self.url}/response/{name}"

    def reset(self) -> None:
        with self._condition:
            self.calls.clear()
            self.acks.clear()
            self.files.clear()
            self.posted.clear()
            self._rate_limited.clear()

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def serve_file(self, name: str, content: bytes, chunked: bool = False) -> str:
        """Serve `content` at file_url(name); `chunked` leaves out the Content-Length header."""
        with self._condition:
            self.files[name] = (content, chunked)
        return self.file_url(name)

    def rate_limit_once(self, method: str) -> None:
        """Answer the next call of `method` with HTTP 429 and Retry-After: 1."""
        with self._condition:
            self._rate_limited.add(method)

    # -- queries for tests ----------------------------------------------------------------

    def messages(self, method: str | None = None) -> list[Call]:
        """Return the recorded message calls (all of MESSAGE_METHODS, or one method)."""
        with self._condition:
            wanted = {method} if method else MESSAGE_METHODS
            return [c for c in self.calls if c.method in wanted]

    def wait_for(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        """Block until `check()` is true, re-checking whenever a call or ack arrives."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not check():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s; calls: {self.summary()}")
                self._condition.wait(remaining)

    def wait_for_messages(self, count: int, method: str | None = None) -> list[Call]:
        self.wait_for(lambda: len(self.messages(method)) >= count)
        return self.messages(method)

    def summary(self) -> list[str]:
        return [c.method for c in self.calls]

    def _record(self, call: Call) -> None:
        with self._condition:
            self.calls.append(call)
            self._condition.notify_all()

    # -- Web API --------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await _read_body(request)
        call = Call(method, body, request.headers.get("Authorization", ""))
        with self._condition:
            limited = method in self._rate_limited
            self._rate_limited.discard(method)
        if limited:
            call.result = {"ok": False, "error": "ratelimited"}
            self._record(call)
            return web.json_response(call.result, status=429, headers={"Retry-After": "1"})
        if method in MESSAGE_METHODS:
            call.problems = block_kit_problems(body)
        elif method == "views.open":
            view = body.get("view") or {}
            call.problems = view_problems(json.loads(view) if isinstance(view, str) else view)
            if not body.get("trigger_id"):
                call.problems.append("trigger_id is missing")
        if call.problems:
            call.result = {"ok": False, "error": "invalid_blocks"}
        else:
            call.result = self._result(method, body)
        self._record(call)
        return web.json_response(call.result)

    def _result(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://city.example.slack.com/",
                "team": "city",
                "user": "madoguchi",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket=t"}
        if method in ("chat.postMessage", "chat.update"):
            ts = body.get("ts") or f"1700000000.{next(self._ts):06d}"
            message = {k: body.get(k) for k in ("text", "blocks", "thread_ts") if k in body}
            if isinstance(message.get("blocks"), str):
                message["blocks"] = json.loads(message["blocks"])
            key = (str(body.get("channel")), ts)
            if method == "chat.update" and key not in self.posted:
                return {"ok": False, "error": "message_not_found"}
            with self._condition:
                self.posted[key] = {"type": "message", "ts": ts, **message}
            return {"ok": True, "channel": body.get("channel"), "ts": ts, "message": message}
        if method == "conversations.history":
            return self._history(body)
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}
        if method == "views.open":
            view = body.get("view") or {}
            view = json.loads(view) if isinstance(view, str) else view
            return {"ok": True, "view": {**view, "id": f"V{next(self._ts):08d}"}}
        return {"ok": True}

    def _history(self, query: dict[str, Any]) -> dict[str, Any]:
        """Return the channel's messages between `oldest` and `latest`, newest first."""
        channel = str(query.get("channel") or "")
        inclusive = str(query.get("inclusive", "")).lower() in ("1", "true")
        oldest = float(query.get("oldest") or 0)
        latest = float(query.get("latest") or time.time())
        with self._condition:
            found = [
                message
                for (posted_channel, ts), message in self.posted.items()
                if posted_channel == channel
                and (oldest <= float(ts) <= latest if inclusive else oldest < float(ts) < latest)
            ]
        found.sort(key=lambda m: float(m["ts"]), reverse=True)
        limit = int(query.get("limit") or 100)
        return {"ok": True, "messages": found[:limit], "has_more": len(found) > limit}

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        authorization = request.headers.get("Authorization", "")
        call = Call(FILE_DOWNLOAD, {"name": name}, authorization)
        with self._condition:
            stored = self.files.get(name)
        self._record(call)
        if not authorization.startswith("Bearer xoxb-"):
            return web.Response(status=403, text="not authorized")
        if stored is None:
            return web.Response(status=404, text="file not found")
        content, chunked = stored
        if not chunked:
            return web.Response(body=content, content_type="image/jpeg")
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(content), 64 * 1024):
            try:
                await response.write(content[start : start + 64 * 1024])
            except ConnectionError:
                break  # the client stopped reading, as it should past its limit
        return response

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await _read_body(request)
        call = Call("response_url", body, problems=block_kit_problems(body))
        self._record(call)
        if call.problems:
            return web.Response(status=400, text="invalid_blocks")
        return web.Response(text="ok")

    # -- Socket Mode ----------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._socket = socket
        with self._condition:
            self.socket_connections += 1
            self._condition.notify_all()
        await socket.send_json({"type": "hello", "num_connections": 1})
        async for frame in socket:
            if frame.type == WSMsgType.TEXT:
                with self._condition:
                    self.acks.append(json.loads(frame.data))
                    self._condition.notify_all()
        return socket

    def send_envelope(self, envelope: dict[str, Any]) -> None:
        """Send one envelope over the current Socket Mode connection."""

        async def send() -> None:
            assert self._socket is not None, "no Socket Mode connection"
            await self._socket.send_json(envelope)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout=10)

    def drop_socket(self) -> None:
        """Close the current Socket Mode connection from the server side."""

        async def close() -> None:
            if self._socket is not None:
                await self._socket.close(code=1001, message=b"going away")

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query)
    raw = await request.read()
    if not raw:
        return {}
    if request.content_type == "application/json":
        data = json.loads(raw)
        return data if isinstance(data, dict) else {"value": data}
    return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))

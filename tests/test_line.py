"""The LINE channel end to end: the real app under uvicorn, the real core and SQLite, and a
fake LINE API on 127.0.0.1 that line-bot-sdk talks to over HTTP. Webhooks are signed the
way LINE signs them: base64 of HMAC-SHA256 over the raw body with the channel secret.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from linebot.v3.webhooks import TextMessageContent

from adapters import line
from adapters.server import create_app
from bot import messages
from bot.models import Reply
from bot.settings import Settings
from bot.store import SQLiteStore
from tests.fakes.line_api import (
    CONTENT_PREFIX,
    LOADING,
    PUSH,
    REPLY,
    FakeLineApi,
    payload_problems,
)

SECRET = "test-channel-secret"
TOKEN = "test-access-token"
ROOT = Path(__file__).resolve().parent.parent
CARD_ERROR = "ご利用いただけないカードです"
PIN_PHOTO = ROOT.parent / "shared" / "eval" / "images" / "photo_mild-07.jpg"


# -- harness ------------------------------------------------------------------------------------


class LiveServer:
    """Run an ASGI app under uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, ws="none")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class Harness:
    api: FakeLineApi
    client: httpx.Client
    store: SQLiteStore
    app: Any
    caplog: pytest.LogCaptureFixture

    def post(self, body: bytes, signature: str | bytes | None = "sign") -> httpx.Response:
        headers: dict[str, str | bytes] = {"content-type": "application/json"}
        if signature == "sign":
            headers["x-line-signature"] = sign(body)
        elif signature is not None:
            headers["x-line-signature"] = signature
        return self.client.post("/line/webhook", content=body, headers=headers)

    def deliver(self, *events: dict[str, Any]) -> httpx.Response:
        response = self.post(payload(*events))
        assert response.status_code == 200
        return response

    def outcomes(self) -> list[str]:
        return [
            r.getMessage()
            for r in self.caplog.records
            if r.name == "adapters.line" and r.getMessage().startswith("line event type=")
        ]

    def wait_outcomes(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.outcomes()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.outcomes())} of {count} events handled")
            time.sleep(0.01)
        return self.outcomes()


def sign(body: bytes, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def make_settings(api_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "line_channel_secret": SECRET,
        "line_channel_access_token": TOKEN,
        "line_api_url": api_url,
        "line_data_api_url": api_url,
        "db_path": tmp_path / "line.sqlite3",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Harness]]:
    """Start the fake LINE API and the app; keyword arguments override settings."""
    caplog.set_level(logging.INFO, logger="adapters.line")
    monkeypatch.setattr(line, "RETRY_BASE_SECONDS", 0.01)
    stack: list[Any] = []

    def _start(**overrides: Any) -> Harness:
        api = FakeLineApi(TOKEN).__enter__()
        stack.append(api)
        app = create_app(make_settings(api.url, tmp_path, **overrides))
        server = LiveServer(app).__enter__()
        stack.append(server)
        client = httpx.Client(base_url=server.url, trust_env=False, timeout=10)
        stack.append(client)
        return Harness(api, client, app.state.store, app, caplog)

    yield _start
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


@pytest.fixture
def h(start: Callable[..., Harness]) -> Harness:
    return start()


# -- webhook bodies -----------------------------------------------------------------------------


def payload(*events: dict[str, Any]) -> bytes:
    return json.dumps({"destination": "Ubot", "events": list(events)}, ensure_ascii=False).encode()


def event(kind: str, source: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": source or {"type": "user", "userId": "U1"},
        "webhookEventId": uuid.uuid4().hex.upper(),
        "deliveryContext": {"isRedelivery": False},
    }
    if kind not in ("unfollow", "leave"):
        body["replyToken"] = uuid.uuid4().hex
    body.update(fields)
    return body


def message(content: dict[str, Any], **fields: Any) -> dict[str, Any]:
    content = {"id": str(uuid.uuid4().int)[:18], "quoteToken": uuid.uuid4().hex, **content}
    return event("message", message=content, **fields)


def text(
    value: str, mentionees: list[dict[str, Any]] | None = None, **fields: Any
) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "text", "text": value}
    if mentionees:
        content["mention"] = {"mentionees": mentionees}
    return message(content, **fields)


def postback(data: str, **fields: Any) -> dict[str, Any]:
    return event("postback", postback={"data": data}, **fields)


def group(user: str | None = "U1", group_id: str = "G1") -> dict[str, Any]:
    source = {"type": "group", "groupId": group_id}
    if user:
        source["userId"] = user
    return source


def self_mention(at: str, body: str, index: int = 0) -> dict[str, Any]:
    """A text event mentioning the bot; `index` counts UTF-16 units like LINE."""
    mention = {"index": index, "length": len(at), "type": "user", "userId": "Ubot", "isSelf": True}
    return text(body, [mention], source=group())


def reply_texts(call: Any) -> list[str]:
    return [m["text"] for m in call.body["messages"]]


# -- conversation -------------------------------------------------------------------------------


def test_two_turn_diagnosis_through_postback(h: Harness) -> None:
    first = text(CARD_ERROR)
    h.deliver(first)
    question = h.api.wait_calls(REPLY, 1)[0]

    assert question.body["replyToken"] == first["replyToken"]
    assert question.headers["authorization"] == f"Bearer {TOKEN}"
    last = question.body["messages"][-1]
    items = last["quickReply"]["items"]
    labels = [i["action"]["label"] for i in items]
    assert "住基カード" in labels
    assert all(i["action"]["type"] == "postback" for i in items)
    assert all(label in last["text"] for label in labels)  # written out for LINE for PC
    data = json.loads(items[labels.index("住基カード")]["action"]["data"])
    assert data == {"q": "card_type", "t": "住基カード"}

    second = postback(items[labels.index("住基カード")]["action"]["data"])
    h.deliver(second)
    answer = h.api.wait_calls(REPLY, 2)[1]

    assert answer.body["replyToken"] == second["replyToken"]
    assert "原因" in "".join(reply_texts(answer))
    assert "住基カード" in "".join(reply_texts(answer))
    assert all("quickReply" not in m for m in answer.body["messages"][:-1])
    assert h.api.calls_to(LOADING) == []  # the core returned well within a second


def test_two_turn_diagnosis_by_typed_label(h: Harness) -> None:
    h.deliver(text(CARD_ERROR))
    h.api.wait_calls(REPLY, 1)
    h.deliver(text("住基カード"))
    answer = h.api.wait_calls(REPLY, 2)[1]

    assert "原因" in "".join(reply_texts(answer))
    assert h.store.load("line:U1") is not None


def test_messages_of_one_person_answered_in_order(h: Harness) -> None:
    first, second = text(CARD_ERROR), text("住基カード")
    h.deliver(first, second)
    calls = h.api.wait_calls(REPLY, 2)

    assert [c.body["replyToken"] for c in calls] == [first["replyToken"], second["replyToken"]]
    assert "原因" in "".join(reply_texts(calls[1]))


# -- signature and payload checks ---------------------------------------------------------------


def test_forged_signature_rejected(h: Harness) -> None:
    body = payload(text(CARD_ERROR))
    flipped = bytearray(body)
    flipped[-5] ^= 0x01

    assert h.post(body, signature=sign(body, "another-secret")).status_code == 400
    assert h.post(bytes(flipped), signature=sign(body)).status_code == 400
    time.sleep(0.2)
    assert h.api.calls == []
    assert h.outcomes() == []
    assert h.store.load("line:U1") is None


def test_missing_signature_rejected(h: Harness) -> None:
    body = payload(text(CARD_ERROR))

    assert h.post(body, signature=None).status_code == 400
    assert h.post(body, signature="abc").status_code == 400
    assert h.post(body, signature="").status_code == 400
    assert h.post(body, signature="署名".encode()).status_code == 400
    time.sleep(0.2)
    assert h.api.calls == []
    assert h.outcomes() == []


def test_reserialized_body_rejected(h: Harness) -> None:
    body = payload(text("住民票が取れません😀"))
    reserialized = json.dumps(json.loads(body), ensure_ascii=True).encode()

    assert h.post(reserialized, signature=sign(body)).status_code == 400
    assert h.post(body, signature=sign(body)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2]", b'{"events": "x"}', b'{"events": [1]}', b'{"events": [{}]}'],
)
def test_malformed_payload_with_valid_signature_rejected(h: Harness, body: bytes) -> None:
    response = h.post(body)

    assert response.status_code == 400
    assert h.api.calls == []


def test_body_over_limit_rejected(h: Harness) -> None:
    body = payload(text("あ" * (line.MAX_BODY_BYTES // 3 + 10)))

    assert h.post(body).status_code == 413


def test_empty_events_acknowledged(h: Harness) -> None:
    response = h.post(json.dumps({"destination": "Ubot", "events": []}).encode())

    assert response.status_code == 200
    time.sleep(0.2)
    assert h.api.calls == []


def test_missing_destination_tolerated(h: Harness) -> None:
    body = json.dumps({"events": [text(CARD_ERROR)]}, ensure_ascii=False).encode()

    assert h.post(body).status_code == 200
    h.api.wait_calls(REPLY, 1)


def test_placeholder_reply_tokens_not_used(h: Harness) -> None:
    h.deliver(text(CARD_ERROR, replyToken="0" * 32), text(CARD_ERROR, replyToken="f" * 32))
    outcomes = h.wait_outcomes(2)

    assert all("placeholder reply token" in o for o in outcomes)
    assert h.api.calls == []


def test_unknown_event_type_ignored(h: Harness) -> None:
    unknown = event("somethingNew", things={"a": 1})
    unsupported = message({"type": "hologram"})
    h.deliver(unknown, unsupported, text(CARD_ERROR))

    assert len(h.api.wait_calls(REPLY, 1)) == 1
    messages_ = [r.getMessage() for r in h.caplog.records if r.name == "adapters.line"]
    assert any("somethingNew" in m and "not handled" in m for m in messages_)
    assert any("'message'" in m and "not handled" in m for m in messages_)


def test_leave_and_member_events_ignored(h: Harness) -> None:
    h.deliver(
        event("leave", source={"type": "group", "groupId": "G1"}),
        event(
            "memberJoined",
            source=group(None),
            joined={"members": [{"type": "user", "userId": "U9"}]},
        ),
    )
    outcomes = h.wait_outcomes(2)

    assert all("not handled" in o for o in outcomes)
    assert h.api.calls == []


# -- redelivery ---------------------------------------------------------------------------------


def test_same_event_three_times_one_reply(h: Harness) -> None:
    original = text(CARD_ERROR)
    again = {**original, "deliveryContext": {"isRedelivery": True}}
    h.deliver(original)
    h.deliver(again)
    h.deliver(again)
    outcomes = h.wait_outcomes(3)

    assert len(h.api.calls_to(REPLY)) == 1
    assert sum("already processed" in o for o in outcomes) == 2


def test_failing_event_does_not_stop_the_batch(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    respond = h.app.state.assistant.respond

    def respond_or_fail(msg: Any) -> Reply:
        if msg.user == "U1":
            raise RuntimeError("boom in the core")
        return respond(msg)

    monkeypatch.setattr(h.app.state.assistant, "respond", respond_or_fail)
    events = [text(CARD_ERROR, source={"type": "user", "userId": u}) for u in ("U1", "U2", "U3")]
    h.deliver(*events)
    calls = h.api.wait_calls(REPLY, 3)

    apology = next(c for c in calls if c.body["replyToken"] == events[0]["replyToken"])
    assert reply_texts(apology) == [line.TEXTS["core_error"]]
    assert "boom" not in json.dumps(apology.body, ensure_ascii=False)
    others = [c for c in calls if c is not apology]
    assert all(c.body["messages"][-1].get("quickReply") for c in others)


# -- groups and rooms ---------------------------------------------------------------------------


def test_group_message_without_mention_ignored(h: Harness) -> None:
    h.deliver(text(CARD_ERROR, source=group()))
    outcomes = h.wait_outcomes(1)

    assert "not mentioned" in outcomes[0]
    assert h.api.calls == []
    assert h.store.load("line:group:G1:U1") is None


def test_group_message_with_mention_answered(h: Harness) -> None:
    h.deliver(self_mention("@市役所bot", f"@市役所bot {CARD_ERROR}"))
    reply = h.api.wait_calls(REPLY, 1)[0]

    assert reply.body["messages"][-1]["quickReply"]["items"]
    assert h.store.load("line:group:G1:U1") is not None
    assert h.api.calls_to(LOADING) == []  # loading animation only in one-to-one chats


def test_mention_of_someone_else_ignored(h: Harness) -> None:
    other = {"index": 0, "length": 3, "type": "user", "userId": "U2", "isSelf": False}
    h.deliver(text(f"@太郎 {CARD_ERROR}", [other], source=group()))
    outcomes = h.wait_outcomes(1)

    assert "not mentioned" in outcomes[0]
    assert h.api.calls == []


def test_group_members_keep_separate_state(h: Harness) -> None:
    first = self_mention("@bot", f"@bot {CARD_ERROR}")
    second = self_mention("@bot", f"@bot {CARD_ERROR}")
    second["source"] = group("U2")
    no_user = self_mention("@bot", "@bot こんにちは")
    no_user["source"] = group(None)
    h.deliver(first, second, no_user)
    h.api.wait_calls(REPLY, 3)

    assert h.store.load("line:group:G1:U1") is not None
    assert h.store.load("line:group:G1:U2") is not None
    assert h.store.load("line:group:G1:anon") is not None


def test_postback_in_group_needs_no_mention(h: Harness) -> None:
    h.deliver(self_mention("@bot", f"@bot {CARD_ERROR}"))
    items = h.api.wait_calls(REPLY, 1)[0].body["messages"][-1]["quickReply"]["items"]
    data = next(i["action"]["data"] for i in items if i["action"]["label"] == "住基カード")
    h.deliver(postback(data, source=group()))
    answer = h.api.wait_calls(REPLY, 2)[1]

    assert "原因" in "".join(reply_texts(answer))


def test_room_message_with_mention_answered(h: Harness) -> None:
    mention = {"index": 0, "length": 4, "type": "user", "isSelf": True}
    source = {"type": "room", "roomId": "R1", "userId": "U1"}
    h.deliver(text(f"@bot {CARD_ERROR}", [mention], source=source))
    h.api.wait_calls(REPLY, 1)

    assert h.store.load("line:room:R1:U1") is not None


def test_non_text_in_group_ignored(h: Harness) -> None:
    h.deliver(message(NON_TEXT["sticker"], source=group()))
    h.deliver(message(IMAGE, source=group()))
    outcomes = h.wait_outcomes(2)

    assert "no text in a group" in outcomes[0]
    assert "no text in a group" in outcomes[1]
    assert h.api.calls == []


def _content(body: str, mentionees: list[dict[str, Any]]) -> TextMessageContent:
    raw = {"type": "text", "id": "1", "quoteToken": "q", "text": body}
    if mentionees:
        raw["mention"] = {"mentionees": mentionees}
    return TextMessageContent.from_dict(raw)


def _mentionee(index: int, length: int) -> dict[str, Any]:
    return {"index": index, "length": length, "type": "user", "isSelf": True}


def test_strip_mentions_counts_utf16_units() -> None:
    # 😀 is two UTF-16 units, so the mention starts at unit 2, not code point 1.
    content = _content("😀@市役所bot 住民票", [_mentionee(2, 7)])

    assert line.strip_mentions(content) == "😀 住民票"


def test_strip_mentions_fallbacks() -> None:
    by_code_points = _content("😀@市役所bot 住民票", [_mentionee(1, 7)])
    wrong_offsets = _content("@市役所bot 住民票", [_mentionee(5, 3)])
    two = _content("@a @市役所bot 住民票", [_mentionee(0, 2), _mentionee(3, 7)])

    assert line.strip_mentions(by_code_points) == "😀 住民票"
    assert line.strip_mentions(wrong_offsets) == "住民票"
    assert line.strip_mentions(two) == "住民票"


# -- follow, unfollow, join, standby ------------------------------------------------------------


def test_follow_greets(h: Harness) -> None:
    h.deliver(event("follow", follow={"isUnblocked": False}))
    reply = h.api.wait_calls(REPLY, 1)[0]

    assert "コンビニ交付" in reply_texts(reply)[0]


def test_unblock_starts_fresh(h: Harness) -> None:
    h.deliver(text(CARD_ERROR))
    h.api.wait_calls(REPLY, 1)
    assert h.store.load("line:U1") is not None

    h.deliver(event("follow", follow={"isUnblocked": True}))
    greeting = h.api.wait_calls(REPLY, 2)[1]

    assert "コンビニ交付" in reply_texts(greeting)[0]
    assert h.store.load("line:U1") is None


def test_unfollow_deletes_state(h: Harness) -> None:
    h.deliver(text(CARD_ERROR))
    h.api.wait_calls(REPLY, 1)
    assert h.store.load("line:U1") is not None

    h.deliver(event("unfollow"))
    outcomes = h.wait_outcomes(2)

    assert "state deleted" in outcomes[1]
    assert h.store.load("line:U1") is None
    assert len(h.api.calls) == 1


def test_join_greets_group(h: Harness) -> None:
    h.deliver(event("join", source={"type": "group", "groupId": "G1"}))
    reply = h.api.wait_calls(REPLY, 1)[0]
    (greeting,) = reply_texts(reply)

    city = h.app.state.assistant.kb.municipality.name
    assert greeting == line.TEXTS["join"].format(city=city)
    assert "「@」でこのアカウントを付けて" in greeting
    # Photos in a group get no reply, so the greeting must not invite them there.
    assert greeting != messages.greeting(h.app.state.assistant.kb.municipality)
    assert "グループでは読み取れません" in greeting
    assert "1対1のトーク" in greeting


def test_standby_sends_nothing(h: Harness) -> None:
    standby = text(CARD_ERROR, mode="standby")
    del standby["replyToken"]
    h.deliver(standby, event("follow", mode="standby", follow={"isUnblocked": False}))
    outcomes = h.wait_outcomes(2)

    assert all("standby" in o for o in outcomes)
    assert h.api.calls == []


# -- other message types ------------------------------------------------------------------------

IMAGE = {"type": "image", "contentProvider": {"type": "line"}}
NON_TEXT = {
    "sticker": {
        "type": "sticker",
        "packageId": "446",
        "stickerId": "1988",
        "stickerResourceType": "STATIC",
    },
    "audio": {"type": "audio", "duration": 1200, "contentProvider": {"type": "line"}},
    "video": {"type": "video", "duration": 1200, "contentProvider": {"type": "line"}},
    "file": {"type": "file", "fileName": "screen.pdf", "fileSize": 1024},
    "location": {"type": "location", "latitude": 35.0, "longitude": 139.0},
}


@pytest.mark.parametrize("kind", sorted(NON_TEXT))
def test_non_text_message_gets_kind_reply(h: Harness, kind: str) -> None:
    h.deliver(message(NON_TEXT[kind]))
    reply = h.api.wait_calls(REPLY, 1)[0]

    assert reply_texts(reply) == [line.TEXTS[kind]]
    assert "文字で送ってください" in reply_texts(reply)[0]


def image_event(message_id: str, **content: Any) -> dict[str, Any]:
    return message({**IMAGE, "id": message_id, **content})


def content_calls(h: Harness) -> list[Any]:
    return [c for c in h.api.calls if c.path.startswith(CONTENT_PREFIX) and c.method == "GET"]


@pytest.fixture
def pin_photo() -> bytes:
    if not PIN_PHOTO.is_file():
        pytest.skip(f"evaluation photo not found: {PIN_PHOTO}")
    return PIN_PHOTO.read_bytes()


def test_photo_read_and_answered(h: Harness, pin_photo: bytes) -> None:
    h.api.content["100001"] = pin_photo
    h.deliver(image_event("100001"))
    reply = h.api.wait_calls(REPLY, 1, timeout=30)[0]

    (download,) = content_calls(h)
    assert download.path == "/v2/bot/message/100001/content"
    assert download.headers["authorization"] == f"Bearer {TOKEN}"
    answer = "".join(reply_texts(reply))
    assert "写真から次の文字を読み取りました" in answer
    assert "暗証番号が間違っております" in answer
    assert payload_problems(reply.body) == []


def test_photo_never_written_to_disk(h: Harness, pin_photo: bytes, tmp_path: Path) -> None:
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    h.api.content["100002"] = pin_photo
    h.deliver(image_event("100002"))
    h.api.wait_calls(REPLY, 1, timeout=30)

    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert all(p.name.startswith("line.sqlite3") for p in written), written
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert pin_photo[:4096] not in path.read_bytes()


def test_external_photo_not_downloaded(h: Harness) -> None:
    external = {
        "type": "external",
        "originalContentUrl": "https://photos.example.com/kiosk.jpg",
        "previewImageUrl": "https://photos.example.com/kiosk-preview.jpg",
    }
    h.deliver(image_event("100003", contentProvider=external))
    reply = h.api.wait_calls(REPLY, 1)[0]

    assert reply_texts(reply) == [line.TEXTS["image_external"]]
    assert content_calls(h) == []


def test_missing_photo_asks_to_resend(h: Harness) -> None:
    h.deliver(image_event("100004"))
    reply = h.api.wait_calls(REPLY, 1)[0]

    assert reply_texts(reply) == [line.TEXTS["image_missing"]]
    assert "もう一度送ってください" in reply_texts(reply)[0]
    assert [c.status for c in content_calls(h)] == [404]
    assert h.store.load("line:U1") is None  # the core never ran


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"%PDF-1.7 not a photo", "not_image"), (b"\xff\xd8\xff" + b"cut off" * 50, "corrupt")],
)
def test_unreadable_photo_gets_clear_reply(h: Harness, content: bytes, reason: str) -> None:
    h.api.content["100007"] = content
    h.deliver(image_event("100007"))
    reply = h.api.wait_calls(REPLY, 1)[0]

    assert messages.IMAGE_REJECTED[reason] in "".join(reply_texts(reply))


def test_failing_photo_download_gets_apology(h: Harness) -> None:
    h.api.fail_next("/v2/bot/message/100005/content", 500)
    h.deliver(image_event("100005"))
    reply = h.api.wait_calls(REPLY, 1)[0]

    assert reply_texts(reply) == [line.TEXTS["image_failed"]]


def test_image_set_gets_one_reply(h: Harness, pin_photo: bytes) -> None:
    for index in (1, 2, 3):
        h.api.content[f"20000{index}"] = pin_photo
    images = [
        image_event(f"20000{i}", imageSet={"id": "S1", "index": i, "total": 3}) for i in (1, 2, 3)
    ]
    h.deliver(*images)
    outcomes = h.wait_outcomes(3, timeout=30)

    assert len(h.api.calls_to(REPLY)) == 1
    assert sum("image set" in o for o in outcomes) == 2
    assert len(content_calls(h)) == 1
    assert "暗証番号が間違っております" in "".join(reply_texts(h.api.calls_to(REPLY)[0]))


def test_photo_during_handoff_not_read(h: Harness) -> None:
    h.deliver(text("職員と話したい"))
    h.api.wait_calls(REPLY, 1)
    h.deliver(image_event("100006"))
    reply = h.api.wait_calls(REPLY, 2)[1]

    assert reply_texts(reply) == [line.TEXTS["image_in_handoff"]]
    assert content_calls(h) == []


# -- rich menu ----------------------------------------------------------------------------------


def test_rich_menu_definition_is_uploadable() -> None:
    menu = json.loads((ROOT / "knowledge" / "line-rich-menu.json").read_text(encoding="utf-8"))
    width, height = menu["size"]["width"], menu["size"]["height"]

    # LINE's rules for the menu image, which must match this size.
    assert 800 <= width <= 2500
    assert height >= 250
    assert width / height >= 1.45
    assert len(menu["chatBarText"]) <= 14
    assert len(menu["name"]) <= 300
    labels = []
    for area in menu["areas"]:
        bounds, action = area["bounds"], area["action"]
        assert bounds["x"] >= 0
        assert bounds["y"] >= 0
        assert bounds["x"] + bounds["width"] <= width
        assert bounds["y"] + bounds["height"] <= height
        assert action["type"] == "postback"
        assert line.decode_postback(action["data"]) == {"menu": line.MENU_BY_LABEL[action["label"]]}
        assert action["displayText"] == action["label"]
        labels.append(action["label"])
    assert labels == ["エラーを調べる", "使い方", "職員に相談"]


@pytest.mark.parametrize("key", ["errors", "usage"])
def test_rich_menu_buttons_answered(h: Harness, key: str) -> None:
    h.deliver(postback(json.dumps({"menu": key})))
    h.deliver(text(line.MENU_LABELS[key], source={"type": "user", "userId": "U2"}))
    calls = h.api.wait_calls(REPLY, 2)

    assert reply_texts(calls[0]) == reply_texts(calls[1])
    assert h.store.load("line:U1") is None  # menu buttons do not reach the core


def test_rich_menu_staff_button_hands_off(h: Harness) -> None:
    h.deliver(postback(json.dumps({"menu": "staff"})))
    h.deliver(text(line.MENU_LABELS["staff"], source={"type": "user", "userId": "U2"}))
    calls = h.api.wait_calls(REPLY, 2)

    city = h.app.state.assistant.kb.municipality
    assert reply_texts(calls[0]) == [messages.handoff_opened(city)]
    assert reply_texts(calls[1]) == [messages.handoff_opened(city)]
    assert h.store.handoff_for("line:U1") is not None
    assert h.store.handoff_for("line:U2") is not None


def test_messages_during_handoff_get_no_reply(h: Harness) -> None:
    h.deliver(text("職員と話したい"))
    h.api.wait_calls(REPLY, 1)
    h.deliver(text(CARD_ERROR))
    outcomes = h.wait_outcomes(2)

    # No staff channel is set, so the message is not relayed, but the bot stays quiet.
    assert "not posted" in outcomes[1]
    assert len(h.api.calls_to(REPLY)) == 1


def test_menu_errors_starts_over(h: Harness) -> None:
    h.deliver(text(CARD_ERROR))
    h.api.wait_calls(REPLY, 1)
    h.deliver(postback(json.dumps({"menu": "errors"})))
    h.api.wait_calls(REPLY, 2)

    assert h.store.load("line:U1") is None


# -- sending: token expiry, retries, loading ----------------------------------------------------


def test_expired_reply_token_falls_back_to_push(h: Harness) -> None:
    expired = text(CARD_ERROR)
    h.api.expire(expired["replyToken"])
    h.deliver(expired)
    push = h.api.wait_calls(PUSH, 1)[0]

    assert len(h.api.calls_to(REPLY)) == 1
    assert push.body["to"] == "U1"
    assert push.body["messages"][-1]["quickReply"]["items"]
    assert uuid.UUID(push.headers["x-line-retry-key"])
    assert "x-line-retry-key" not in h.api.calls_to(REPLY)[0].headers
    assert any("push" in r.getMessage() for r in h.caplog.records if r.levelname == "WARNING")


def test_push_fallback_can_be_switched_off(start: Callable[..., Harness]) -> None:
    h = start(line_push_fallback=False)
    expired = text(CARD_ERROR)
    h.api.expire(expired["replyToken"])
    h.deliver(expired)
    outcomes = h.wait_outcomes(1)

    assert "reply token rejected" in outcomes[0]
    assert h.api.calls_to(PUSH) == []


def test_group_push_goes_to_the_group(h: Harness) -> None:
    mentioned = self_mention("@bot", f"@bot {CARD_ERROR}")
    h.api.expire(mentioned["replyToken"])
    h.deliver(mentioned)

    assert h.api.wait_calls(PUSH, 1)[0].body["to"] == "G1"


def test_rate_limited_reply_retried(h: Harness) -> None:
    h.api.fail_next(REPLY, 429, message="Too Many Requests")
    h.deliver(text(CARD_ERROR))
    calls = h.api.wait_calls(REPLY, 2)

    assert [c.status for c in calls] == [429, 200]
    assert calls[0].body == calls[1].body


def test_reply_retries_are_bounded(h: Harness) -> None:
    h.api.fail_next(REPLY, 500, count=10)
    h.deliver(text(CARD_ERROR))
    outcomes = h.wait_outcomes(1)

    assert len(h.api.calls_to(REPLY)) == line.MAX_ATTEMPTS
    assert "failed" in outcomes[0]
    assert h.api.calls_to(PUSH) == []


def test_no_push_after_ambiguous_5xx(h: Harness) -> None:
    # LINE may have delivered the first reply before failing; the token is then used up.
    sent = text(CARD_ERROR)
    h.api.fail_next(REPLY, 503)
    h.api.expire(sent["replyToken"])
    h.deliver(sent)
    outcomes = h.wait_outcomes(1)

    assert "uncertain" in outcomes[0]
    assert h.api.calls_to(PUSH) == []


def test_push_retries_keep_one_retry_key(h: Harness) -> None:
    expired = text(CARD_ERROR)
    h.api.expire(expired["replyToken"])
    h.api.fail_next(PUSH, 429, count=2, headers={"Retry-After": "0"})
    h.api.fail_next(PUSH, 500)
    h.deliver(expired)
    pushes = h.api.wait_calls(PUSH, 4)

    assert [c.status for c in pushes] == [429, 429, 500, 200]
    assert len({c.headers["x-line-retry-key"] for c in pushes}) == 1


def test_push_conflict_counts_as_sent(h: Harness) -> None:
    # A 409 means LINE already accepted a push with this retry key.
    expired = text(CARD_ERROR)
    h.api.expire(expired["replyToken"])
    h.api.fail_next(PUSH, 409, message="The retry key is already accepted")
    h.deliver(expired)
    outcomes = h.wait_outcomes(1)

    assert "pushed" in outcomes[0]
    assert len(h.api.calls_to(PUSH)) == 1


def test_reply_timeout_not_retried(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line, "REQUEST_TIMEOUT", (1.0, 0.2))
    h.api.delay_next(REPLY, 0.6)
    h.deliver(text(CARD_ERROR))
    outcomes = h.wait_outcomes(1)

    assert "network error" in outcomes[0]
    time.sleep(0.5)
    assert len(h.api.calls_to(REPLY)) == 1
    assert h.api.calls_to(PUSH) == []


def test_loading_animation_when_core_is_slow(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line, "LOADING_AFTER_SECONDS", 0.05)
    respond = h.app.state.assistant.respond

    def slow_respond(msg: Any) -> Reply:
        time.sleep(0.8)
        return respond(msg)

    monkeypatch.setattr(h.app.state.assistant, "respond", slow_respond)
    started = time.monotonic()
    h.deliver(text(CARD_ERROR))
    acknowledged = time.monotonic() - started
    calls = h.api.wait_for(lambda cs: any(c.path == REPLY for c in cs))

    assert acknowledged < 0.6  # the webhook does not wait for the core
    assert [c.path for c in calls] == [LOADING, REPLY]
    assert calls[0].body == {"chatId": "U1", "loadingSeconds": line.LOADING_SECONDS}


def test_concurrent_webhooks_all_answered(h: Harness) -> None:
    events = [text(CARD_ERROR, source={"type": "user", "userId": f"U{i}"}) for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda e: h.post(payload(e)).status_code, events))
    calls = h.api.wait_calls(REPLY, 20, timeout=20)

    assert statuses == [200] * 20
    assert sorted(c.body["replyToken"] for c in calls) == sorted(e["replyToken"] for e in events)
    assert all(c.status == 200 for c in calls)


def test_linebot_imported_explicitly_and_only_here() -> None:
    # Wildcard imports from linebot.v3.messaging and linebot.v3.webhooks shadow each other.
    for path in sorted([*ROOT.glob("bot/*.py"), *ROOT.glob("adapters/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("linebot"):
                assert path.name == "line.py", path
                assert all(alias.name != "*" for alias in node.names), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("linebot") for a in node.names), path


# -- logging ------------------------------------------------------------------------------------


def test_logs_hold_no_resident_text_or_secrets(h: Harness) -> None:
    h.deliver(text("住民票が取れない 090-1234-5678"))
    h.api.wait_calls(REPLY, 1)
    h.wait_outcomes(1)
    logged = "\n".join(r.getMessage() for r in h.caplog.records if r.levelno >= logging.INFO)

    assert "住民票が取れない" not in logged
    assert "090-1234-5678" not in logged
    assert TOKEN not in logged
    assert SECRET not in logged
    assert "U1" not in logged
    assert len(h.outcomes()) == 1


# -- message building ---------------------------------------------------------------------------


def test_text_over_5000_units_split() -> None:
    text_ = "あ" * 4999 + "😀"  # 5,001 UTF-16 units in 5,000 code points
    parts = line.split_text(text_)

    assert len(parts) == 2
    assert all(line.utf16_len(p) <= 5000 for p in parts)
    assert "".join(parts) == text_


def test_split_prefers_sentence_ends() -> None:
    sentence = "住民票の写しを取るときは、マイナンバーカードを置いてください。"
    text_ = sentence * 400
    parts = line.split_text(text_)

    assert all(p.endswith("。") for p in parts)
    assert "".join(parts) == text_


def test_split_never_more_than_five_messages() -> None:
    parts = line.split_text("あ" * 40_000)

    assert len(parts) == 5
    assert all(line.utf16_len(p) <= 5000 for p in parts)
    assert parts[-1].endswith("…")


def test_overflows_matches_split_cut() -> None:
    assert not line.overflows("あ" * 25_000)
    assert line.overflows("あ" * 25_001)
    assert not line.overflows("")
    assert line.overflows("ab" * 6, limit=2, max_parts=5)
    assert not line.overflows("ab" * 5, limit=2, max_parts=5)


def test_split_keeps_graphemes_whole() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"
    parts = line.split_text("a" * 4995 + family * 3)

    assert parts[0] == "a" * 4995
    assert parts[1] == family * 3


@hypothesis_settings(deadline=None)
@given(st.text(min_size=1, max_size=400), st.integers(min_value=8, max_value=60))
def test_split_property(text_: str, limit: int) -> None:
    parts = line.split_text(text_, limit=limit, max_parts=5)

    assert len(parts) <= 5
    for part in parts:
        assert part
        assert line.utf16_len(part) <= limit
        part.encode("utf-8")  # no lone surrogate from a cut pair


def test_long_reply_reaches_line_in_five_messages(h: Harness) -> None:
    sender = line.Sender(make_settings(h.api.url, Path("unused")))
    reply = Reply(user="U1", kind="answer", text="長い説明です。" * 5000, choices=["はい"])
    try:
        outcome = sender.send("token-1", "U1", line.build_messages(reply))
    finally:
        sender.close()
    call = h.api.calls_to(REPLY)[0]

    assert outcome == "replied"
    assert call.status == 200
    assert len(call.body["messages"]) == 5
    assert payload_problems(call.body) == []
    assert [("quickReply" in m) for m in call.body["messages"]] == [False] * 4 + [True]


def test_quick_reply_clamped() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"
    choices = [f"選択肢{i}" for i in range(14)] + [family * 25, "わからない"]
    reply = Reply(user="U1", kind="question", text="質問", choices=choices, fact_id="card_type")
    items = line.build_messages(reply)[-1].quick_reply.items

    assert len(items) == 13
    assert items[-1].action.label == "わからない"
    long_label = line.quick_reply([family * 25], None).items[0].action
    assert long_label.label == family * 19 + "…"
    assert long_label.display_text == family * 25
    assert json.loads(long_label.data) == {"t": family * 25}


@hypothesis_settings(deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=20),
    st.one_of(st.none(), st.text(min_size=1, max_size=40)),
)
def test_quick_reply_property(choices: list[str], fact_id: str | None) -> None:
    reply = Reply(user="U1", kind="question", text="質問です", choices=choices, fact_id=fact_id)
    rendered = [m.to_dict() for m in line.build_messages(reply)]
    items = rendered[-1]["quickReply"]["items"]

    assert len(items) <= 13
    for item in items:
        action = item["action"]
        assert len(list(line.iter_graphemes(action["label"]))) <= 20
        assert line.utf16_len(action["data"]) <= 300
        assert line.utf16_len(action["displayText"]) <= 300
        assert line.decode_postback(action["data"]) is not None
    assert payload_problems({"messages": rendered}) == []

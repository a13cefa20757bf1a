"""The Slack channel end to end: the real app under uvicorn, signed requests, a fake Slack.

Requests are signed as Slack signs them (HMAC-SHA256 of `v0:timestamp:body`). Every Web API
call, response_url post and Socket Mode frame goes to the fake in tests/fakes/slack_api.py,
which also rejects any message payload that breaks Block Kit limits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from fastapi import FastAPI

from adapters import slack_blocks
from adapters.server import create_app
from adapters.slack import (
    COMMAND,
    FILE_REFUSED,
    FileFetcher,
    SocketMode,
    build_app,
    start_socket_mode,
)
from bot import messages
from bot.assistant import Assistant
from bot.knowledge import KnowledgeBase
from bot.models import Message, Reply
from bot.ocr import MAX_IMAGE_BYTES
from bot.settings import Settings
from bot.store import SQLiteStore
from tests.conftest import KNOWLEDGE, ROOT
from tests.fakes.slack_api import (
    BOT_ID,
    BOT_USER_ID,
    FILE_DOWNLOAD,
    TEAM_ID,
    Call,
    FakeSlack,
    block_kit_problems,
)
from tests.servers import serve

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-bot-token-0123456789"
APP_TOKEN = "xapp-1-test-app-token-0123456789"
STAFF_CHANNEL = "CSTAFF01"
DM_CHANNEL = "DSTAFF01"
STAFF_USER = "USTAFF01"
CARD_ERROR = "ご利用いただけないカードです"
PIN_PHOTO = ROOT.parent / "shared" / "eval" / "images" / "photo_mild-07.jpg"


# -- harness ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def callback(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "token": "unused-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": "A0MADOGUCHI",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
    }


def mention(text: str, ts: str, thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "user": STAFF_USER,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": ts,
        "channel": STAFF_CHANNEL,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return {**event, **extra}


def direct_message(text: str, ts: str, **extra: Any) -> dict[str, Any]:
    event = {
        "type": "message",
        "channel_type": "im",
        "user": STAFF_USER,
        "text": text,
        "ts": ts,
        "channel": DM_CHANNEL,
        "event_ts": ts,
    }
    return {**event, **extra}


@dataclass
class Slack:
    """One running app plus the fake Slack it talks to."""

    fake: FakeSlack
    base_url: str
    http: httpx.Client
    store: SQLiteStore
    app: FastAPI
    caplog: pytest.LogCaptureFixture

    def post(
        self,
        body: bytes,
        content_type: str,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        stamp = int(time.time()) if timestamp is None else timestamp
        all_headers = {"Content-Type": content_type, **sign(body, stamp, secret), **(headers or {})}
        return self.http.post(f"{self.base_url}/slack/events", content=body, headers=all_headers)

    def event(
        self, event: dict[str, Any], event_id: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        body = json.dumps(callback(event, event_id)).encode()
        response = self.post(body, "application/json", headers=headers)
        assert response.status_code == 200, response.text
        return response

    def form(self, fields: dict[str, str]) -> httpx.Response:
        response = self.post(urlencode(fields).encode(), "application/x-www-form-urlencoded")
        assert response.status_code == 200, response.text
        return response

    def command(self, text: str, response_name: str = "cmd") -> httpx.Response:
        return self.form(
            {
                "token": "unused",
                "team_id": TEAM_ID,
                "team_domain": "city",
                "channel_id": STAFF_CHANNEL,
                "channel_name": "madoguchi-staff",
                "user_id": STAFF_USER,
                "user_name": "staff",
                "command": "/madoguchi",
                "text": text,
                "api_app_id": "A0MADOGUCHI",
                "response_url": self.fake.response_url(response_name),
                "trigger_id": "1.2.3",
            }
        )

    def click(self, question: Call, label: str, user: str = STAFF_USER) -> httpx.Response:
        """Click the button labelled `label` on a question posted with chat.postMessage."""
        blocks = question.body["blocks"]
        block, button = find_button(blocks, label)
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": "staff", "team_id": TEAM_ID},
            "api_app_id": "A0MADOGUCHI",
            "token": "unused",
            "container": {
                "type": "message",
                "message_ts": question.result["ts"],
                "channel_id": question.body["channel"],
                "is_ephemeral": False,
            },
            "trigger_id": "1.2.3",
            "team": {"id": TEAM_ID, "domain": "city"},
            "channel": {"id": question.body["channel"], "name": "madoguchi-staff"},
            "message": {
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "ts": question.result["ts"],
                "text": question.body["text"],
                "blocks": blocks,
                **(
                    {"thread_ts": question.body["thread_ts"]}
                    if "thread_ts" in question.body
                    else {}
                ),
            },
            "response_url": self.fake.response_url("click"),
            "actions": [action(block, button)],
        }
        return self.form({"payload": json.dumps(payload)})

    def wait_for_log(self, fragment: str, count: int = 1, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.log_count(fragment) < count:
            assert time.monotonic() < deadline, f"no log line with {fragment!r}"
            time.sleep(0.02)

    def log_count(self, fragment: str) -> int:
        return sum(fragment in record.getMessage() for record in list(self.caplog.records))


def find_button(blocks: list[dict[str, Any]], label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for block in blocks:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["value"] == label:
                return block, element
    raise AssertionError(f"no button {label!r} in {blocks}")


def action(block: dict[str, Any], button: dict[str, Any]) -> dict[str, Any]:
    return {
        "action_id": button["action_id"],
        "block_id": block["block_id"],
        "text": button["text"],
        "value": button["value"],
        "type": "button",
        "action_ts": f"{time.time():.6f}",
    }


def button_labels(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def block_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def settings_for(fake: FakeSlack, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        slack_signing_secret=SIGNING_SECRET,
        slack_bot_token=BOT_TOKEN,
        slack_api_url=fake.api_url,
        db_path=tmp_path / "madoguchi.sqlite3",
        **extra,
    )


@contextmanager
def running_slack(
    fake: FakeSlack, settings: Settings, caplog: pytest.LogCaptureFixture
) -> Iterator[Slack]:
    fake.reset()
    caplog.set_level(logging.INFO)
    store = SQLiteStore(settings.db_path)
    app = create_app(settings, store)
    with serve(app) as base_url, httpx.Client(timeout=10) as http:
        yield Slack(fake, base_url, http, store, app, caplog)
    invalid = [(c.method, c.problems) for c in fake.calls if c.problems]
    assert invalid == [], "payloads Slack would reject"


@pytest.fixture
def slack(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Slack]:
    with running_slack(fake_slack, settings_for(fake_slack, tmp_path), caplog) as running:
        yield running


# -- verification -------------------------------------------------------------------------


def test_url_verification_returns_challenge(slack: Slack) -> None:
    body = json.dumps(
        {
            "token": "unused",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()

    response = slack.post(body, "application/json")

    assert response.status_code == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.text


def test_bad_signatures_rejected_with_401(slack: Slack) -> None:
    body = json.dumps(callback(mention(CARD_ERROR, "1700000001.000100"), "EvBad1")).encode()
    now = int(time.time())
    url = f"{slack.base_url}/slack/events"
    json_type = {"Content-Type": "application/json"}

    wrong_secret = slack.post(body, "application/json", secret="another-secret")
    tampered = slack.http.post(url, content=body + b" ", headers={**json_type, **sign(body, now)})
    unsigned = slack.http.post(url, content=body, headers=json_type)

    assert wrong_secret.status_code == 401
    assert tampered.status_code == 401
    assert unsigned.status_code == 401
    assert slack.fake.messages() == []


def test_stale_timestamp_rejected_with_401(slack: Slack) -> None:
    body = json.dumps(callback(mention(CARD_ERROR, "1700000002.000100"), "EvStale1")).encode()

    stale = slack.post(body, "application/json", timestamp=int(time.time()) - 301)
    future = slack.post(body, "application/json", timestamp=int(time.time()) + 301)
    recent = slack.post(body, "application/json", timestamp=int(time.time()) - 200)

    assert stale.status_code == 401
    assert future.status_code == 401
    assert recent.status_code == 200
    slack.fake.wait_for_messages(1, "chat.postMessage")


MALFORMED_BODIES = {
    "broken_json": (b"{bad json", "application/json"),
    "broken_payload": (b"payload=%7Bbad", "application/x-www-form-urlencoded"),
    "json_array": (b"[1,2]", "application/json"),
    "not_utf8": (b'{"type": "\xff\xfe"}', "application/json"),
}


@pytest.mark.parametrize("shape", sorted(MALFORMED_BODIES))
def test_malformed_body_unsigned_gets_401(slack: Slack, shape: str) -> None:
    body, content_type = MALFORMED_BODIES[shape]
    url = f"{slack.base_url}/slack/events"

    unsigned = slack.http.post(url, content=body, headers={"Content-Type": content_type})
    wrong = slack.post(body, content_type, secret="another-secret")
    stale = slack.post(body, content_type, timestamp=int(time.time()) - 301)

    assert unsigned.status_code == 401
    assert wrong.status_code == 401
    assert stale.status_code == 401


@pytest.mark.parametrize("shape", sorted(MALFORMED_BODIES))
def test_malformed_body_signed_gets_400(slack: Slack, shape: str) -> None:
    body, content_type = MALFORMED_BODIES[shape]

    response = slack.post(body, content_type)

    assert response.status_code == 400
    assert response.json() == {"error": "invalid payload"}
    assert slack.fake.messages() == []


def test_non_numeric_timestamp_gets_401(slack: Slack) -> None:
    body = json.dumps(callback(mention(CARD_ERROR, "1700000004.000100"), "EvStamp1")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": "soon",
        "X-Slack-Signature": "v0=00",
    }

    response = slack.http.post(f"{slack.base_url}/slack/events", content=body, headers=headers)

    assert response.status_code == 401


def test_rejection_log_holds_no_body(slack: Slack) -> None:
    body = json.dumps(callback(mention("秘密の質問です", "1700000003.000100"), "EvLog1")).encode()

    slack.post(body, "application/json", secret="another-secret")

    assert slack.log_count("rejected") == 1
    assert slack.log_count("秘密の質問です") == 0


# -- where staff ask ----------------------------------------------------------------------


def test_mention_answered_in_thread_with_sections(slack: Slack) -> None:
    slack.event(mention(f"{CARD_ERROR} 住基カードです", "1700000010.000100"), "EvMention1")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert post.body["channel"] == STAFF_CHANNEL
    assert post.body["thread_ts"] == "1700000010.000100"
    assert post.authorization == f"Bearer {BOT_TOKEN}"
    blocks = post.body["blocks"]
    assert blocks[0]["type"] == "header"
    assert "エラー1" in blocks[0]["text"]["text"]
    text = block_text(blocks)
    for heading in ("画面の表示", "原因", "住民への案内", "職員向けメモ", "出典"):
        assert f"*{heading}*" in text
    assert "エラー1・原因1a" in text
    assert post.body["text"].strip()


def test_mention_inside_thread_answers_at_root(slack: Slack) -> None:
    event = mention(CARD_ERROR, "1700000011.000900", thread_ts="1700000011.000100")

    slack.event(event, "EvMention2")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert post.body["thread_ts"] == "1700000011.000100"


def test_direct_message_answered_in_dm(slack: Slack) -> None:
    slack.event(
        direct_message(f"{CARD_ERROR}。住基カードを使いました", "1700000012.000100"), "EvDm1"
    )

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert post.body["channel"] == DM_CHANNEL
    assert "thread_ts" not in post.body
    assert "エラー1" in block_text(post.body["blocks"])


def test_slash_command_reply_is_ephemeral(slack: Slack) -> None:
    started = time.monotonic()
    response = slack.command(f"{CARD_ERROR} 通知カード")
    elapsed = time.monotonic() - started

    (reply,) = slack.fake.wait_for_messages(1, "response_url")
    assert response.status_code == 200
    assert elapsed < 3
    assert reply.body["response_type"] == "ephemeral"
    assert reply.body["replace_original"] is False
    assert "エラー1" in block_text(reply.body["blocks"])
    assert slack.fake.messages("chat.postMessage") == []


def test_thread_reply_continues_conversation(slack: Slack) -> None:
    root = "1700000013.000100"
    slack.event(mention(CARD_ERROR, root), "EvThread1")
    slack.fake.wait_for_messages(1, "chat.postMessage")

    slack.event(mention("住基カードでした", "1700000013.000500", thread_ts=root), "EvThread2")
    posts = slack.fake.wait_for_messages(2, "chat.postMessage")
    slack.event(mention("最初から", "1700000013.000900", thread_ts=root), "EvThread3")
    slack.fake.wait_for_messages(3, "chat.postMessage")

    assert posts[1].body["thread_ts"] == root
    assert "エラー1・原因1a" in block_text(posts[1].body["blocks"])
    kinds = [turn["kind"] for turn in slack.store.turns()]
    assert kinds == ["question", "answer", "notice"]


def test_rate_limited_post_is_retried(slack: Slack) -> None:
    slack.fake.rate_limit_once("chat.postMessage")

    slack.event(mention(CARD_ERROR, "1700000014.000100"), "EvLimited1")

    posts = slack.fake.wait_for_messages(2, "chat.postMessage")
    assert posts[0].result["error"] == "ratelimited"
    assert posts[1].result["ok"] is True


def test_manifest_matches_handlers() -> None:
    manifest = yaml.safe_load((ROOT / "docs" / "slack-manifest.yaml").read_text(encoding="utf-8"))

    features, settings = manifest["features"], manifest["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert settings["event_subscriptions"]["bot_events"] == ["app_mention", "message.im"]
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read",
        "chat:write",
        "commands",
        "im:history",
    }
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True
    assert features["app_home"]["messages_tab_read_only_enabled"] is False


# -- follow-up questions as buttons -------------------------------------------------------


def test_button_click_finishes_diagnosis(slack: Slack) -> None:
    root = "1700000020.000100"
    slack.event(mention(CARD_ERROR, root), "EvClick1")
    (question,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert question.body["thread_ts"] == root
    assert "住基カード" in button_labels(question.body["blocks"])
    assert all(
        e["action_id"].startswith("madoguchi_choice_")
        for b in question.body["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    )

    slack.click(question, "住基カード", user="USTAFF02")

    (update,) = slack.fake.wait_for_messages(1, "chat.update")
    posts = slack.fake.wait_for_messages(2, "chat.postMessage")
    answer = posts[1]
    assert update.body["ts"] == question.result["ts"]
    assert update.body["channel"] == STAFF_CHANNEL
    assert button_labels(update.body["blocks"]) == []
    assert "<@USTAFF02> さんが「住基カード」を選びました。" in block_text(update.body["blocks"])
    assert answer.body["thread_ts"] == root
    assert "エラー1・原因1a" in block_text(answer.body["blocks"])


def test_double_click_answers_once(slack: Slack) -> None:
    slack.event(mention(CARD_ERROR, "1700000021.000100"), "EvClick2")
    (question,) = slack.fake.wait_for_messages(1, "chat.postMessage")

    slack.click(question, "住基カード")
    slack.click(question, "通知カード")

    slack.wait_for_log("outcome=duplicate")
    slack.fake.wait_for_messages(2, "chat.postMessage")
    assert len(slack.fake.messages("chat.update")) == 1
    assert len(slack.fake.messages("chat.postMessage")) == 2


def test_button_click_on_ephemeral_question(slack: Slack) -> None:
    slack.command(CARD_ERROR)
    (question,) = slack.fake.wait_for_messages(1, "response_url")
    block, button = find_button(question.body["blocks"], "住基カード")
    payload = {
        "type": "block_actions",
        "user": {"id": STAFF_USER, "team_id": TEAM_ID},
        "container": {
            "type": "message",
            "message_ts": "1700000022.000200",
            "channel_id": STAFF_CHANNEL,
            "is_ephemeral": True,
        },
        "team": {"id": TEAM_ID},
        "channel": {"id": STAFF_CHANNEL},
        "response_url": slack.fake.response_url("ephemeral-click"),
        "actions": [action(block, button)],
    }

    slack.form({"payload": json.dumps(payload)})

    replies = slack.fake.wait_for_messages(3, "response_url")
    chosen, answer = replies[1], replies[2]
    assert chosen.body["replace_original"] is True
    assert "「住基カード」を選びました" in block_text(chosen.body["blocks"])
    assert answer.body["response_type"] == "ephemeral"
    assert "エラー1・原因1a" in block_text(answer.body["blocks"])
    assert slack.fake.messages("chat.postMessage") == []


# -- acknowledgement and duplicates -------------------------------------------------------


def test_retry_of_event_answered_once(slack: Slack) -> None:
    event = mention(CARD_ERROR, "1700000030.000100")
    slack.event(event, "EvRetry1")
    slack.fake.wait_for_messages(1, "chat.postMessage")

    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    slack.event(event, "EvRetry1", headers=retry)
    slack.event(event, "EvRetry1", headers={**retry, "X-Slack-Retry-Num": "2"})

    slack.wait_for_log("id=EvRetry1 retry=2")
    assert slack.log_count("id=EvRetry1 retry=1 ") == 1
    assert slack.log_count("outcome=duplicate") == 2
    assert len(slack.fake.messages("chat.postMessage")) == 1


def test_same_event_id_twice_answered_once(slack: Slack) -> None:
    event = direct_message(CARD_ERROR, "1700000031.000100")

    slack.event(event, "EvTwice1")
    slack.event(event, "EvTwice1")

    slack.wait_for_log("outcome=duplicate")
    slack.fake.wait_for_messages(1, "chat.postMessage")
    assert len(slack.fake.messages("chat.postMessage")) == 1


def test_mention_also_delivered_as_message_answered_once(slack: Slack) -> None:
    ts = "1700000032.000100"
    as_mention = mention(CARD_ERROR, ts)
    as_channel_message = {**as_mention, "type": "message", "channel_type": "channel"}
    dm_ts = "1700000032.000500"
    dm = direct_message(f"<@{BOT_USER_ID}> {CARD_ERROR}", dm_ts)
    dm_as_mention = {**dm, "type": "app_mention"}

    slack.event(as_channel_message, "EvDouble1")
    slack.event(as_mention, "EvDouble2")
    slack.event(dm, "EvDouble3")
    slack.event(dm_as_mention, "EvDouble4")

    slack.wait_for_log("outcome=", count=4)
    posts = slack.fake.messages("chat.postMessage")
    assert sorted(p.body["channel"] for p in posts) == [STAFF_CHANNEL, DM_CHANNEL]


def test_slow_busy_core_still_acks_quickly(slack: Slack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each reply takes longer than Slack's 3 s limit, and there are more requests than
    # Bolt's listener threads (5): every acknowledgement must still come back at once.
    assistant = slack.app.state.assistant
    respond = assistant.respond

    def slow_respond(message: Message) -> Reply:
        time.sleep(3.2)
        return respond(message)

    monkeypatch.setattr(assistant, "respond", slow_respond)
    ack_seconds = []
    for n in range(8):
        started = time.monotonic()
        if n % 2:
            slack.command(CARD_ERROR, response_name=f"busy{n}")
        else:
            slack.event(mention(CARD_ERROR, f"1700000034.00010{n}"), f"EvBusy{n}")
        ack_seconds.append(time.monotonic() - started)

    assert max(ack_seconds) < 2.0
    slack.fake.wait_for(lambda: len(slack.fake.messages()) == 8, timeout=30)
    assert len(slack.fake.messages("chat.postMessage")) == 4
    assert len(slack.fake.messages("response_url")) == 4


def test_bolt_app_acks_before_processing(
    fake_slack: FakeSlack, tmp_path: Path, kb: KnowledgeBase
) -> None:
    store = SQLiteStore(tmp_path / "x.sqlite3")
    assistant = Assistant(kb, store)

    app = build_app(settings_for(fake_slack, tmp_path), assistant, store)

    assert app.process_before_response is False


def test_bot_token_in_environment_gives_no_warning(
    fake_slack: FakeSlack,
    tmp_path: Path,
    kb: KnowledgeBase,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_slack.reset()
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    caplog.set_level(logging.DEBUG, logger="slack_bolt")
    store = SQLiteStore(tmp_path / "x.sqlite3")

    app = build_app(settings_for(fake_slack, tmp_path), Assistant(kb, store), store)

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    assert app.client.base_url == fake_slack.api_url
    (auth,) = [c for c in fake_slack.calls if c.method == "auth.test"]
    assert auth.authorization == f"Bearer {BOT_TOKEN}"


def test_unhandled_requests_acknowledged_quietly(slack: Slack) -> None:
    slack.caplog.set_level(logging.DEBUG)
    reaction = {
        "type": "reaction_added",
        "user": STAFF_USER,
        "reaction": "eyes",
        "item": {"type": "message", "channel": STAFF_CHANNEL, "ts": "1700000041.000100"},
        "event_ts": "1700000041.000200",
    }
    shortcut = {
        "type": "shortcut",
        "callback_id": "some_other_shortcut",
        "trigger_id": "1.2.3",
        "user": {"id": STAFF_USER, "username": "staff", "team_id": TEAM_ID},
        "team": {"id": TEAM_ID, "domain": "city"},
        "token": "unused",
        "action_ts": "1700000041.000300",
    }

    first = slack.event(reaction, "EvReaction1")
    second = slack.event(reaction, "EvReaction2")
    clicked = slack.form({"payload": json.dumps(shortcut)})

    assert first.status_code == second.status_code == clicked.status_code == 200
    ignored = [r for r in slack.caplog.records if "slack request ignored" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in ignored] == [
        (logging.INFO, "slack request ignored: event_callback/reaction_added"),
        (logging.DEBUG, "slack request ignored: event_callback/reaction_added"),
        (logging.INFO, "slack request ignored: shortcut/some_other_shortcut"),
    ]
    bolt_warnings = [
        r for r in slack.caplog.records if r.name.startswith("slack_bolt") and r.levelno >= 30
    ]
    assert bolt_warnings == []
    assert slack.fake.messages() == []


# -- what is ignored ----------------------------------------------------------------------


def test_bots_edits_and_deletes_ignored(slack: Slack) -> None:
    ignored = [
        direct_message(CARD_ERROR, "1700000040.000100", bot_id="BOTHER01", user="UOTHERBOT"),
        direct_message(CARD_ERROR, "1700000040.000200", subtype="bot_message", user=None),
        direct_message(CARD_ERROR, "1700000040.000300", subtype="message_changed"),
        direct_message("", "1700000040.000400", subtype="message_deleted"),
        direct_message(CARD_ERROR, "1700000040.000500", subtype="channel_join"),
        mention(CARD_ERROR, "1700000040.000600", bot_id="BOTHER01"),
        {"type": "message", "channel_type": "im", "channel": DM_CHANNEL, "text": CARD_ERROR},
    ]
    for index, event in enumerate(ignored):
        slack.event(event, f"EvIgnored{index}")
    # The bot's own message is dropped by Bolt before any listener runs.
    own = direct_message(CARD_ERROR, "1700000040.000700", user=BOT_USER_ID, bot_id=BOT_ID)
    slack.event(own, "EvIgnoredOwn")

    slack.wait_for_log("outcome=ignored:", count=len(ignored))
    time.sleep(0.2)
    assert slack.fake.messages() == []


# -- long input, escaping and limits ------------------------------------------------------


def test_40000_character_message_gets_reply(slack: Slack) -> None:
    text = CARD_ERROR + "。" + "住民から長い説明を受けました。" * 2700
    assert len(text) >= 40_000

    slack.event(mention(text[:40_000], "1700000050.000100"), "EvLong1")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert post.result["ok"] is True
    assert post.body["thread_ts"] == "1700000050.000100"


def test_inbound_text_decoded_before_core(slack: Slack) -> None:
    text = f"<!channel> <#C0123|窓口> {CARD_ERROR} &amp;lt;b&amp;gt; A &amp; B <https://example.com/a|手順書>"

    slack.event(mention(text, "1700000051.000100"), "EvInbound1")

    slack.fake.wait_for_messages(1, "chat.postMessage")
    assert slack.store.turns()[-1]["text"] == f"#窓口 {CARD_ERROR} &lt;b&gt; A & B 手順書"


@pytest.mark.parametrize(
    ("slack_text", "expected"),
    [
        ("&amp;lt;", "&lt;"),
        ("&lt;E-102&gt;", "<E-102>"),
        ("用紙&amp;トナー", "用紙&トナー"),
        (f"<@{BOT_USER_ID}> エラー", "エラー"),
        ("<@U0OTHER|tanaka> さんから", "さんから"),
        ("<#C0123|staff> で", "#staff で"),
        ("<https://example.com|手順> を見て", "手順 を見て"),
        ("<https://example.com> を見て", "https://example.com を見て"),
        ("<!here> <!channel> 至急", "至急"),
        ("<!subteam^S0123|@madoguchi> 宛", "宛"),
        ("<!date^1700000000^{date}|2023年11月15日> の件", "2023年11月15日 の件"),
        ("&amp;amp;", "&amp;"),
    ],
)
def test_inbound_text_table(slack_text: str, expected: str) -> None:
    assert slack_blocks.inbound_text(slack_text) == expected


def test_outbound_escape_round_trips() -> None:
    for text in ("A&B<C>", "&amp;", "<!channel>", "a > b & c < d", "&lt;"):
        assert slack_blocks.inbound_text(slack_blocks.escape(text)) == text.strip()
    assert slack_blocks.escape("<!channel>") == "&lt;!channel&gt;"
    assert slack_blocks.escape("\"quotes\" and 'apostrophes'") == "\"quotes\" and 'apostrophes'"


def test_knowledge_text_cannot_ping_channel(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    knowledge = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, knowledge)
    injection = " <!channel> <!here> <@U0BOSS> 用紙&トナー <E-102>"
    errors_file = knowledge / "errors.yaml"
    data = yaml.safe_load(errors_file.read_text(encoding="utf-8"))
    for error in data["errors"]:
        for cause in error["causes"]:
            for key in ("summary", "remedy", "staff_notes"):
                cause[key] = (cause.get(key) or "") + injection
    errors_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    settings = settings_for(fake_slack, tmp_path, knowledge_dir=knowledge)

    with running_slack(fake_slack, settings, caplog) as slack:
        slack.event(mention(f"{CARD_ERROR} 住基カード", "1700000052.000100"), "EvInject1")
        slack.command(f"{CARD_ERROR} 通知カード")
        messages = [
            *slack.fake.wait_for_messages(1, "chat.postMessage"),
            *slack.fake.wait_for_messages(1, "response_url"),
        ]

    for message in messages:
        sent = json.dumps(message.body, ensure_ascii=False)
        for token in ("<!channel>", "<!here>", "<@U0BOSS>", "<E-102>"):
            assert token not in sent
        assert "&lt;!channel&gt;" in sent
        assert "用紙&amp;トナー" in sent


def test_huge_answer_fits_block_kit_limits() -> None:
    long_text = "\n".join(f"{n}行目: <!channel> 用紙&トナー " + "あ" * 180 for n in range(120))
    reply = Reply(
        user="u",
        kind="answer",
        text=long_text,
        error_id="1",
        cause_id="1a",
        sections={
            "title": "エラー1「" + "長い題名" * 60 + "」",
            "screen": long_text,
            "cause": "原" * 7000,
            "remedy": long_text,
            "staff_notes": "&" * 5000,
            "sources": long_text,
        },
        choices=[f"選択肢{n} " + "い" * 100 for n in range(60)],
    )

    payload = slack_blocks.render(reply, "C1:1700000000.000100:U1")

    assert block_kit_problems(payload) == []
    blocks = payload["blocks"]
    assert len(blocks) <= slack_blocks.MAX_BLOCKS
    visible = sum(len(b["text"]["text"]) for b in blocks if b["type"] in ("section", "header"))
    assert visible <= slack_blocks.MAX_MESSAGE_BLOCK_CHARS
    assert slack_blocks.TRUNCATED in block_text(blocks)
    assert "<!channel>" not in json.dumps(payload, ensure_ascii=False)
    assert len(payload["text"]) <= slack_blocks.MAX_FALLBACK_CHARS


def test_section_split_never_cuts_entity() -> None:
    reply = Reply(user="u", kind="fallback", text="a" + "&" * 4000)

    blocks = slack_blocks.render(reply, "C1:x:U1")["blocks"]

    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert len(sections) > 1
    for text in sections:
        assert len(text) <= slack_blocks.MAX_SECTION_CHARS
        assert text.replace("&amp;", "") in ("a", "")


def test_every_knowledge_answer_renders_within_limits(kb: KnowledgeBase) -> None:
    assistant = Assistant(kb)
    for error in kb.errors:
        conversation = f"C1:{error.id}:U1"
        reply = assistant.respond(
            Message("slack", conversation, error.screen_text or error.title, audience="staff")
        )
        for _ in range(4):
            assert block_kit_problems(slack_blocks.render(reply, conversation)) == [], error.id
            if not reply.choices:
                break
            reply = assistant.respond(
                Message("slack", conversation, reply.choices[0], audience="staff")
            )


def test_huge_handoff_fits_block_kit_limits() -> None:
    transcript = [f"<!channel> 用紙&トナー {n} " + "あ" * 2000 for n in range(10)]
    candidates = ["エラー7「暗証番号の間違い」（一致度 0.90）"] * 3

    payload = slack_blocks.render_handoff(
        "h" * 32,
        "LINE",
        transcript,
        candidates,
        "エラー7・原因7a",
        transcript[0],
        "【市の職員より】",
    )
    updated = slack_blocks.render_handoff_status(
        payload["blocks"], "h" * 32, slack_blocks.status_active("USTAFF01")
    )

    assert block_kit_problems(payload) == []
    assert block_kit_problems(updated) == []
    shown = [b["text"]["text"] for b in payload["blocks"] if b["type"] in ("section", "header")]
    assert all("<!channel>" not in text for text in shown)
    assert "&lt;!channel&gt;" in shown[1]
    assert [e["text"]["text"] for e in payload["blocks"][-1]["elements"]] == [
        "対応する",
        "対応終了",
        "この表現を登録",
    ]
    assert [e["text"]["text"] for e in updated["blocks"][-1]["elements"]] == [
        "対応終了",
        "この表現を登録",
    ]
    assert updated["text"] == "職員が対応しています。"


@pytest.mark.parametrize(
    ("status", "shown", "notified"),
    [
        (
            slack_blocks.status_active("USTAFF01"),
            "<@USTAFF01> さんが対応しています。",
            "職員が対応しています。",
        ),
        (
            slack_blocks.status_closed(slack_blocks.STATUS_CLOSED_BY_STAFF, "USTAFF01"),
            "<@USTAFF01> さんが対応を終了しました。",
            "職員が対応を終了しました。",
        ),
        (
            slack_blocks.status_active("not-an-id>"),
            "職員が対応しています。",
            "職員が対応しています。",
        ),
        (slack_blocks.status_closed(), "この相談は終了しました。", "この相談は終了しました。"),
    ],
)
def test_handoff_status_text_names_someone(
    status: slack_blocks.HandoffStatus, shown: str, notified: str
) -> None:
    payload = slack_blocks.render_handoff_status(None, "h" * 32, status)

    assert payload["blocks"][0]["elements"][0]["text"] == shown
    assert payload["text"] == notified
    assert not payload["text"].startswith("さん")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("画面が真っ青", "画面が真っ青"),
        (
            "暗証番号［削除］を入れたら画面が真っ青（bot: fallback）",
            "暗証番号を入れたら画面が真っ青",
        ),
        ("  画面が\n 真っ青 (bot: clarify)（bot: fallback） ", "画面が 真っ青"),
        ("［削除］ ［削除］", ""),
        ("（bot: fallback）", ""),
        ("画面（エラー7）が出た", "画面（エラー7）が出た"),
    ],
)
def test_clean_phrasing_table(text: str, expected: str) -> None:
    assert slack_blocks.clean_phrasing(text) == expected


@pytest.mark.parametrize("phrasing", ["画面が真っ青" * 400, '"' * 1500, "\x01" * 1500])
def test_teach_button_value_stays_valid(phrasing: str) -> None:
    button = slack_blocks.teach_button(phrasing)

    assert len(button["value"]) <= slack_blocks.MAX_BUTTON_VALUE_CHARS
    carried = slack_blocks.teach_text_of(button["value"])
    assert carried is not None
    assert phrasing.startswith(carried)


def test_reply_without_text_has_fallback() -> None:
    payload = slack_blocks.render(Reply(user="u", kind="notice", text=""), "C1:x:U1")

    assert payload["text"].strip()
    assert block_kit_problems(payload) == []


# -- photos shared with the bot -----------------------------------------------------------


def shared_file(url: str, size: int, mimetype: str = "image/jpeg") -> dict[str, Any]:
    return {
        "id": "F0PHOTO",
        "name": "kiosk.jpg",
        "mimetype": mimetype,
        "filetype": "jpg",
        "size": size,
        "url_private": url,
        "url_private_download": url,
    }


class RecordingServer:
    """A loopback HTTP server that only counts the requests it receives."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.hits.append(self.path)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def pin_photo() -> bytes:
    if not PIN_PHOTO.is_file():
        pytest.skip(f"evaluation photo not found: {PIN_PHOTO}")
    return PIN_PHOTO.read_bytes()


def test_photo_in_mention_answered(slack: Slack, pin_photo: bytes) -> None:
    url = slack.fake.serve_file("kiosk.jpg", pin_photo)
    event = mention("この画面です", "1700000080.000100", files=[shared_file(url, len(pin_photo))])

    slack.event(event, "EvPhoto1")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    (download,) = [c for c in slack.fake.calls if c.method == FILE_DOWNLOAD]
    assert download.authorization == f"Bearer {BOT_TOKEN}"
    text = block_text(post.body["blocks"])
    assert "写真から読み取った文字" in text
    assert "暗証番号が間違っております" in text
    assert "エラー7" in text
    assert post.body["thread_ts"] == "1700000080.000100"


def test_photo_in_direct_message_answered(slack: Slack, pin_photo: bytes) -> None:
    url = slack.fake.serve_file("dm.jpg", pin_photo)
    event = direct_message(
        "", "1700000081.000100", subtype="file_share", files=[shared_file(url, len(pin_photo))]
    )

    slack.event(event, "EvPhoto2")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert post.body["channel"] == DM_CHANNEL
    assert "暗証番号が間違っております" in block_text(post.body["blocks"])


def test_photo_on_other_host_not_fetched(slack: Slack) -> None:
    with RecordingServer() as elsewhere:
        url = f"{elsewhere.url}/files/kiosk.jpg"
        slack.event(
            mention("この画面です", "1700000082.000100", files=[shared_file(url, 1000)]),
            "EvPhoto3",
        )
        (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")

    assert elsewhere.hits == []
    assert [c for c in slack.fake.calls if c.method == FILE_DOWNLOAD] == []
    assert FILE_REFUSED in block_text(post.body["blocks"])


def test_file_fetcher_allows_only_slack_hosts() -> None:
    fetcher = FileFetcher("xoxb-token", "http://127.0.0.1:8123/api/")

    assert fetcher.allowed("https://files.slack.com/files-pri/T1-F1/download/a.jpg")
    assert fetcher.allowed("http://127.0.0.1:8123/files/a.jpg")
    assert not fetcher.allowed("http://files.slack.com/files-pri/T1-F1/a.jpg")
    assert not fetcher.allowed("https://files.slack.com.example.com/a.jpg")
    assert not fetcher.allowed("http://127.0.0.1:8124/files/a.jpg")
    assert not fetcher.allowed("http://localhost:8123/files/a.jpg")
    assert not fetcher.allowed("https://user@evil.example.com/a.jpg")
    assert not fetcher.allowed("file:///etc/passwd")
    assert not fetcher.allowed("https://files.slack.com:99999/a.jpg")


def test_oversized_photo_download_stops(slack: Slack) -> None:
    url = slack.fake.serve_file("big.jpg", b"\xff\xd8\xff" + b"\0" * MAX_IMAGE_BYTES, chunked=True)
    slack.event(mention("大きい写真", "1700000083.000100", files=[shared_file(url, 0)]), "EvPhoto4")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert messages.IMAGE_REJECTED["too_large"] in block_text(post.body["blocks"])


def test_declared_oversized_photo_not_downloaded(slack: Slack) -> None:
    url = slack.fake.serve_file("huge.jpg", b"\xff\xd8\xff")
    event = mention("写真", "1700000084.000100", files=[shared_file(url, MAX_IMAGE_BYTES + 1)])

    slack.event(event, "EvPhoto5")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert messages.IMAGE_REJECTED["too_large"] in block_text(post.body["blocks"])
    assert [c for c in slack.fake.calls if c.method == FILE_DOWNLOAD] == []


def test_corrupt_photo_gets_clear_reply(slack: Slack) -> None:
    url = slack.fake.serve_file("broken.jpg", b"\xff\xd8\xff" + b"broken" * 100)
    slack.event(mention("写真", "1700000085.000100", files=[shared_file(url, 603)]), "EvPhoto6")

    (post,) = slack.fake.wait_for_messages(1, "chat.postMessage")
    assert messages.IMAGE_REJECTED["corrupt"] in block_text(post.body["blocks"])


# -- logging ------------------------------------------------------------------------------


def test_logs_hold_no_question_text_or_secrets(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    question = "住基カードで住民票を出そうとしたら受け付けてもらえなかった"
    with running_slack(fake_slack, settings_for(fake_slack, tmp_path), caplog) as slack:
        caplog.set_level(logging.DEBUG)
        slack.event(mention(question, "1700000060.000100"), "EvLogs1")
        slack.fake.wait_for_messages(1, "chat.postMessage")
        slack.wait_for_log("id=EvLogs1")

    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    everything = [r.getMessage() for r in caplog.records]
    assert sum("slack event" in line and "id=EvLogs1" in line for line in info) == 1
    assert not any(question in line for line in info)
    assert not any(BOT_TOKEN in line or SIGNING_SECRET in line for line in everything)


# -- Socket Mode --------------------------------------------------------------------------


def socket_envelope(
    envelope_id: str, event: dict[str, Any], event_id: str, retry: int = 0
) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": retry,
        "retry_reason": "timeout" if retry else "",
        "payload": callback(event, event_id),
    }


def test_socket_mode_reconnects_and_keeps_answering(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture, kb: KnowledgeBase
) -> None:
    fake = fake_slack
    fake.reset()
    caplog.set_level(logging.INFO)
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_app_token=APP_TOKEN,
        slack_api_url=fake.api_url,
        db_path=tmp_path / "madoguchi.sqlite3",
    )
    store = SQLiteStore(settings.db_path)
    connections_before = fake.socket_connections
    running = start_socket_mode(settings, Assistant(kb, store), store, ping_interval=0.5)
    try:
        fake.wait_for(lambda: fake.socket_connections == connections_before + 1)
        opens = [c for c in fake.calls if c.method == "apps.connections.open"]
        assert [c.authorization for c in opens] == [f"Bearer {APP_TOKEN}"]

        fake.send_envelope(
            socket_envelope("env-1", mention(CARD_ERROR, "1700000070.000100"), "EvS1")
        )
        fake.wait_for(lambda: {"envelope_id": "env-1"} in fake.acks)
        (first,) = fake.wait_for_messages(1, "chat.postMessage")
        assert first.body["thread_ts"] == "1700000070.000100"

        # Socket Mode redelivers with retry_attempt; the event id decides.
        retry = socket_envelope("env-2", mention(CARD_ERROR, "1700000070.000100"), "EvS1", 2)
        fake.send_envelope(retry)
        fake.wait_for(lambda: {"envelope_id": "env-2"} in fake.acks)
        deadline = time.monotonic() + 10
        while not any("id=EvS1 retry=2" in r.getMessage() for r in list(caplog.records)):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert len(fake.messages("chat.postMessage")) == 1

        fake.drop_socket()
        fake.wait_for(lambda: fake.socket_connections == connections_before + 2)
        fake.send_envelope(
            socket_envelope("env-3", direct_message(CARD_ERROR, "1700000071.000100"), "EvS2")
        )
        fake.wait_for(lambda: {"envelope_id": "env-3"} in fake.acks)
        posts = fake.wait_for_messages(2, "chat.postMessage")
        assert posts[1].body["channel"] == DM_CHANNEL
        assert len([c for c in fake.calls if c.method == "apps.connections.open"]) == 2
        assert running.healthy()
        assert any("digest=" in r.getMessage() for r in caplog.records)
    finally:
        running.close()
    assert [c.problems for c in fake.calls if c.problems] == []


def test_socket_mode_silence_reported_unhealthy() -> None:
    session = SimpleNamespace(last_ping_pong_time=time.time() - 600, is_active=lambda: True)
    client = SimpleNamespace(current_session=session, is_connected=lambda: True)
    running = SocketMode(handler=SimpleNamespace(client=client), started=time.time() - 900)  # type: ignore[arg-type]

    assert running.healthy(max_silence_seconds=120) is False
    running.last_message = time.time()
    assert running.healthy(max_silence_seconds=120) is True


def test_socket_mode_needs_app_token(
    fake_slack: FakeSlack, tmp_path: Path, kb: KnowledgeBase
) -> None:
    settings = settings_for(fake_slack, tmp_path)
    store = SQLiteStore(settings.db_path)

    with pytest.raises(ValueError, match="SLACK_APP_TOKEN"):
        start_socket_mode(settings, Assistant(kb, store), store)

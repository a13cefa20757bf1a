"""Hand-offs from LINE to staff on Slack and back, end to end.

The real app runs under uvicorn with the real core and a SQLite file. The fake LINE API and
the fake Slack Web API run on 127.0.0.1; webhooks and Slack requests are signed as the
platforms sign them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from adapters import slack_blocks
from adapters.bridge import RELAY, RESIDENT_BLOCKED, RESIDENT_CLOSED, STAFF_CLOSED
from adapters.server import create_app
from bot import messages
from bot.cli import main as madoguchi
from bot.settings import Settings
from bot.store import SQLiteStore
from tests.fakes.line_api import PUSH, REPLY, Call, FakeLineApi
from tests.fakes.slack_api import BOT_USER_ID, TEAM_ID, FakeSlack
from tests.fakes.slack_api import Call as SlackCall
from tests.servers import serve
from tests.test_line import TOKEN as LINE_TOKEN
from tests.test_line import event as line_event
from tests.test_line import payload, postback, reply_texts, text
from tests.test_line import sign as line_sign
from tests.test_slack import BOT_TOKEN, SIGNING_SECRET, STAFF_CHANNEL, callback
from tests.test_slack import sign as slack_sign

LINE_SECRET = "test-channel-secret"
STAFF = "USTAFF01"
RESIDENT = "U1"
# A phrasing the knowledge base does not know: the bot falls back on it.
UNKNOWN_PHRASE = "画面が真っ青になって何も押せない"


# -- harness ------------------------------------------------------------------------------


@dataclass
class Site:
    """One running app with both channels, and the two fakes it talks to."""

    line: FakeLineApi
    slack: FakeSlack
    http: httpx.Client
    base_url: str
    app: Any
    db_path: Path
    caplog: pytest.LogCaptureFixture

    def wait_log(self, fragment: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(fragment in r.getMessage() for r in list(self.caplog.records)):
            assert time.monotonic() < deadline, f"no log line with {fragment!r}"
            time.sleep(0.02)

    # LINE side

    def resident_says(self, value: str, user: str = RESIDENT) -> dict[str, Any]:
        return self.deliver(text(value, source={"type": "user", "userId": user}))

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        body = payload(event)
        response = self.http.post(
            f"{self.base_url}/line/webhook",
            content=body,
            headers={"content-type": "application/json", "x-line-signature": line_sign(body)},
        )
        assert response.status_code == 200
        return event

    def reply_to(self, event: dict[str, Any]) -> Call:
        calls = self.line.wait_for(
            lambda cs: any(
                c.path == REPLY and c.body["replyToken"] == event["replyToken"] for c in cs
            )
        )
        return next(
            c for c in calls if c.path == REPLY and c.body["replyToken"] == event["replyToken"]
        )

    def pushes(self) -> list[Call]:
        return self.line.calls_to(PUSH)

    # Slack side

    def post_event(self, event: dict[str, Any]) -> None:
        body = json.dumps(callback(event, f"Ev{uuid.uuid4().hex[:10]}")).encode()
        self._signed(body, "application/json")

    def click(self, message: SlackCall, action_id: str, user: str = STAFF) -> None:
        """Click a button of a message the bot posted (or last updated) with these blocks."""
        blocks = message.body["blocks"]
        button = next(
            e
            for b in blocks
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == action_id
        )
        block = next(b for b in blocks if b["type"] == "actions" and button in b["elements"])
        ts = message.body.get("ts") or message.result["ts"]
        body = {
            "type": "block_actions",
            "user": {"id": user, "username": "staff", "team_id": TEAM_ID},
            "api_app_id": "A0MADOGUCHI",
            "token": "unused",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": message.body["channel"],
                "is_ephemeral": False,
            },
            "trigger_id": f"trigger-{uuid.uuid4().hex[:8]}",
            "team": {"id": TEAM_ID, "domain": "city"},
            "channel": {"id": message.body["channel"], "name": "madoguchi-staff"},
            "message": {
                "type": "message",
                "user": BOT_USER_ID,
                "ts": ts,
                "blocks": blocks,
                **({"thread_ts": message.body["thread_ts"]} if "thread_ts" in message.body else {}),
            },
            "response_url": self.slack.response_url("click"),
            "actions": [
                {
                    "action_id": button["action_id"],
                    "block_id": block["block_id"],
                    "text": button["text"],
                    "value": button["value"],
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        self._signed(
            urlencode({"payload": json.dumps(body)}).encode(), "application/x-www-form-urlencoded"
        )

    def submit_view(
        self, view: dict[str, Any], values: dict[str, Any], user: str = STAFF
    ) -> httpx.Response:
        body = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "city"},
            "user": {"id": user, "username": "staff", "team_id": TEAM_ID},
            "api_app_id": "A0MADOGUCHI",
            "token": "unused",
            "trigger_id": "trigger-submit",
            "view": {**view, "state": {"values": values}},
        }
        return self._signed(
            urlencode({"payload": json.dumps(body)}).encode(), "application/x-www-form-urlencoded"
        )

    def _signed(self, body: bytes, content_type: str) -> httpx.Response:
        headers = {"Content-Type": content_type, **slack_sign(body, int(time.time()))}
        response = self.http.post(f"{self.base_url}/slack/events", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return response

    def staff_posts(self) -> list[SlackCall]:
        return self.slack.messages("chat.postMessage")

    def wait_post(self, check: Callable[[SlackCall], bool]) -> SlackCall:
        self.slack.wait_for(lambda: any(check(c) for c in self.staff_posts()))
        return next(c for c in self.staff_posts() if check(c))

    def handoff_post(self) -> SlackCall:
        """Wait for the hand-off post and for the bridge to store its thread."""
        root = self.wait_post(
            lambda c: "thread_ts" not in c.body and c.body["channel"] == STAFF_CHANNEL
        )
        deadline = time.monotonic() + 10
        store = self.store()
        while store.handoff_by_thread(root.result["channel"], root.result["ts"]) is None:
            assert time.monotonic() < deadline, "the hand-off thread was not stored"
            time.sleep(0.02)
        return root

    def thread_texts(self, root: SlackCall) -> list[str]:
        return [
            c.body["text"]
            for c in self.staff_posts()
            if c.body.get("thread_ts") == root.result["ts"]
        ]

    def staff_replies_in_thread(self, root: SlackCall, value: str, user: str = STAFF) -> None:
        ts = f"{time.time():.6f}"
        self.post_event(
            {
                "type": "message",
                "channel": root.result["channel"],
                "channel_type": "channel",
                "user": user,
                "text": value,
                "ts": ts,
                "event_ts": ts,
                "thread_ts": root.result["ts"],
            }
        )

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.db_path)


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def start(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[..., Site]]:
    """Start the app on a fresh fake LINE API; keyword arguments override settings.

    Calling it again keeps the fakes and the database, like a restart of the server.
    """
    caplog.set_level(logging.INFO)
    fake_slack.reset()
    line_api = FakeLineApi(LINE_TOKEN).__enter__()
    servers: list[Any] = []
    http = httpx.Client(timeout=10, trust_env=False)
    db_path = tmp_path / "bridge.sqlite3"

    def _start(slack: bool = True, **overrides: Any) -> Site:
        for running in servers:
            running.__exit__(None, None, None)
        servers.clear()
        values: dict[str, Any] = {
            "line_channel_secret": LINE_SECRET,
            "line_channel_access_token": LINE_TOKEN,
            "line_api_url": line_api.url,
            "line_data_api_url": line_api.url,
            "db_path": db_path,
            **overrides,
        }
        if slack:
            values.update(
                slack_signing_secret=SIGNING_SECRET,
                slack_bot_token=BOT_TOKEN,
                slack_api_url=fake_slack.api_url,
                slack_staff_channel=STAFF_CHANNEL,
            )
        app = create_app(Settings(**values))
        running = serve(app)
        base_url = running.__enter__()
        servers.append(running)
        return Site(line_api, fake_slack, http, base_url, app, db_path, caplog)

    yield _start
    for running in servers:
        running.__exit__(None, None, None)
    http.close()
    line_api.__exit__(None, None, None)
    problems = [(c.method, c.problems) for c in fake_slack.calls if c.problems]
    assert problems == [], "payloads Slack would reject"


def labels_of(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def visible_text(body: dict[str, Any]) -> str:
    """Join the text Slack parses as mrkdwn or shows: fallback, sections, context, header."""
    pieces = [body["text"]]
    for block in body["blocks"]:
        if "text" in block:
            pieces.append(block["text"]["text"])
        if block["type"] == "context":
            pieces.extend(e["text"] for e in block["elements"])
    return "\n".join(pieces)


def push_texts(call: Call) -> str:
    return "".join(m["text"] for m in call.body["messages"])


def status_of(update: SlackCall) -> str:
    """Return the status line of a hand-off post, as a chat.update call left it."""
    (block,) = [
        b for b in update.body["blocks"] if b.get("block_id") == slack_blocks.HANDOFF_STATUS_BLOCK
    ]
    return str(block["elements"][0]["text"])


def ids_in_logs(site: Site, *values: str) -> list[str]:
    """Return the log lines at INFO or above that contain any of `values`."""
    return [
        r.getMessage()
        for r in site.caplog.records
        if r.levelno >= logging.INFO and any(v in r.getMessage() for v in values)
    ]


# -- the whole round trip -----------------------------------------------------------------


def test_handoff_round_trip(start: Callable[..., Site]) -> None:
    site = start()
    first = site.resident_says(f"暗証番号1234を入れたら{UNKNOWN_PHRASE} <!channel>")
    site.reply_to(first)
    ask = site.resident_says("職員と話したい")

    notice = site.reply_to(ask)
    root = site.handoff_post()
    assert reply_texts(notice) == [
        messages.handoff_opened(site.app.state.assistant.kb.municipality)
    ]
    sent = json.dumps(root.body, ensure_ascii=False)
    shown = visible_text(root.body)
    assert UNKNOWN_PHRASE in shown
    assert "1234" not in sent
    assert "<!channel>" not in shown
    assert "&lt;!channel&gt;" in shown
    assert labels_of(root.body["blocks"]) == ["対応する", "対応終了", "この表現を登録"]
    assert root.body["text"].strip()
    handoff = site.store().handoff_by_thread(root.result["channel"], root.result["ts"])
    assert handoff is not None
    assert handoff.status == "waiting"
    assert handoff.user == RESIDENT

    site.staff_replies_in_thread(root, "市の山田です。カードの種類を教えてください。")
    (push,) = site.line.wait_calls(PUSH, 1)
    assert push.body["to"] == RESIDENT
    assert (
        push_texts(push) == f"{messages.STAFF_PREFIX}市の山田です。カードの種類を教えてください。"
    )
    assert uuid.UUID(push.headers["x-line-retry-key"])

    site.staff_replies_in_thread(root, "// 内部メモ: 住民票の件らしい")
    site.wait_log("handoff:internal note")
    answer = site.resident_says("マイナンバーカードです")
    relayed = RELAY.format(text="マイナンバーカードです")
    site.wait_post(lambda c: c.body["text"] == relayed)
    assert site.thread_texts(root)[-1] == relayed
    assert all(c.body["replyToken"] != answer["replyToken"] for c in site.line.calls_to(REPLY))
    assert len(site.pushes()) == 1  # the internal note stayed in Slack

    # The first staff reply already took the hand-off, so the post names who is on it.
    (taken,) = site.slack.wait_for_messages(1, "chat.update")
    assert status_of(taken) == "<@USTAFF01> さんが対応しています。"
    assert labels_of(taken.body["blocks"]) == ["対応終了", "この表現を登録"]
    assert taken.body["text"] == "職員が対応しています。"
    assert site.store().handoff(handoff.id).status == "active"  # type: ignore[union-attr]

    site.click(taken, slack_blocks.CLOSE_ACTION)
    ended = site.line.wait_calls(PUSH, 2)[1]
    site.slack.wait_for_messages(2, "chat.update")
    site.wait_post(lambda c: c.body["text"] == STAFF_CLOSED)
    assert push_texts(ended) == messages.HANDOFF_ENDED
    assert site.store().handoff(handoff.id).status == "closed"  # type: ignore[union-attr]
    closed = site.slack.messages("chat.update")[1]
    assert labels_of(closed.body["blocks"]) == ["この表現を登録"]
    assert status_of(closed) == "<@USTAFF01> さんが対応を終了しました。"
    assert closed.body["text"] == "職員が対応を終了しました。"

    again = site.resident_says("ご利用いただけないカードです")
    question = site.reply_to(again)
    assert question.body["messages"][-1]["quickReply"]["items"]
    assert len(site.thread_texts(root)) == 2  # the relayed line and the closing note


def test_second_pick_gets_notice(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("担当者に相談"))
    root = site.handoff_post()

    site.click(root, slack_blocks.PICK_ACTION)
    (picked,) = site.slack.wait_for_messages(1, "chat.update")
    site.click(root, slack_blocks.PICK_ACTION, user="USTAFF02")

    (notice,) = site.slack.wait_for_messages(1, "response_url")
    site.wait_log("outcome=already_picked")
    assert status_of(picked) == "<@USTAFF01> さんが対応しています。"
    assert picked.body["text"] == "職員が対応しています。"
    assert notice.body["text"] == "この相談は、すでに <@USTAFF01> さんが対応しています。"
    assert notice.body["response_type"] == "ephemeral"
    handoff = site.store().handoff_by_thread(root.result["channel"], root.result["ts"])
    assert handoff is not None
    assert handoff.staff == STAFF
    assert ids_in_logs(site, STAFF, "USTAFF02", "さん") == []


def test_staff_reply_takes_handoff_on_post(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()

    site.staff_replies_in_thread(root, "市の山田です。")
    site.line.wait_calls(PUSH, 1)
    (taken,) = site.slack.wait_for_messages(1, "chat.update")

    assert taken.body["ts"] == root.result["ts"]
    assert status_of(taken) == "<@USTAFF01> さんが対応しています。"
    assert taken.body["text"] == "職員が対応しています。"
    assert labels_of(taken.body["blocks"]) == ["対応終了"]
    # The transcript and candidates stay as they were posted.
    assert taken.body["blocks"][:-2] == root.body["blocks"][:-2]

    site.staff_replies_in_thread(root, "続けて確認します。")
    site.line.wait_calls(PUSH, 2)
    site.wait_log("handoff:pushed", timeout=10)
    assert len(site.slack.messages("chat.update")) == 1  # only the reply that took it
    assert ids_in_logs(site, STAFF) == []


def test_long_staff_reply_shortened_with_notice(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()
    long_reply = "ご案内します。" * 4300  # 30,100 characters: more than five LINE messages

    site.staff_replies_in_thread(root, long_reply)
    (push,) = site.line.wait_calls(PUSH, 1)
    notice = site.wait_post(lambda c: "長すぎる" in c.body["text"])

    assert len(push.body["messages"]) == 5
    assert push_texts(push).endswith("…")
    assert notice.body["thread_ts"] == root.result["ts"]
    sent = len(push_texts(push)) - len(messages.STAFF_PREFIX) - 1
    assert f"約 {sent:,} 文字" in notice.body["text"]
    assert f"全部で {len(long_reply):,} 文字" in notice.body["text"]
    site.wait_log("handoff:pushed shortened")


def test_reply_that_fits_gets_no_notice(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()
    reply = "あ" * (5 * 5000 - len(messages.STAFF_PREFIX))  # exactly five full messages

    site.staff_replies_in_thread(root, reply)
    (push,) = site.line.wait_calls(PUSH, 1)
    site.wait_log("handoff:pushed")

    assert push_texts(push) == messages.STAFF_PREFIX + reply
    assert not any("長すぎる" in text for text in site.thread_texts(root))


def test_rich_menu_staff_button_opens_handoff(start: Callable[..., Site]) -> None:
    site = start()
    tapped = site.deliver(postback(json.dumps({"menu": "staff"})))

    notice = site.reply_to(tapped)
    root = site.handoff_post()

    assert "職員におつなぎします" in reply_texts(notice)[0]
    assert slack_blocks.NO_TRANSCRIPT in json.dumps(root.body, ensure_ascii=False)
    assert labels_of(root.body["blocks"]) == ["対応する", "対応終了"]  # nothing to register


def test_resident_end_word_closes_handoff(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()

    ended = site.resident_says("終了")
    reply = site.reply_to(ended)
    site.wait_post(lambda c: c.body["text"] == RESIDENT_CLOSED)
    (update,) = site.slack.wait_for_messages(1, "chat.update")
    site.staff_replies_in_thread(root, "まだいらっしゃいますか？")
    not_sent = site.wait_post(lambda c: "終了しているため" in c.body["text"])

    assert reply_texts(reply) == [messages.HANDOFF_ENDED]
    assert not_sent.body["thread_ts"] == root.result["ts"]
    assert site.pushes() == []
    assert update.body["ts"] == root.result["ts"]
    assert status_of(update) == slack_blocks.STATUS_CLOSED_BY_RESIDENT
    assert update.body["text"] == slack_blocks.STATUS_CLOSED_BY_RESIDENT
    assert labels_of(update.body["blocks"]) == []


def test_mention_in_handoff_thread_asks_bot(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()
    ts = f"{time.time():.6f}"
    question = f"<@{BOT_USER_ID}> ご利用いただけないカードです 住基カード"
    common = {"user": STAFF, "text": question, "ts": ts, "thread_ts": root.result["ts"]}
    channel = root.result["channel"]

    # Slack sends one post that mentions the bot as both event types.
    site.post_event({"type": "message", "channel": channel, "channel_type": "channel", **common})
    site.post_event({"type": "app_mention", "channel": channel, **common})
    answer = site.wait_post(lambda c: "エラー1" in json.dumps(c.body, ensure_ascii=False))
    site.wait_log("ignored:mention_in_handoff")

    assert answer.body["thread_ts"] == root.result["ts"]
    assert site.pushes() == []


def test_blocking_account_closes_handoff(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()

    site.deliver(line_event("unfollow"))
    site.wait_post(lambda c: c.body["text"] == RESIDENT_BLOCKED)
    (update,) = site.slack.wait_for_messages(1, "chat.update")

    handoff = site.store().handoff_by_thread(root.result["channel"], root.result["ts"])
    assert handoff is not None
    assert handoff.status == "closed"
    assert update.body["ts"] == root.result["ts"]
    assert status_of(update) == slack_blocks.STATUS_CLOSED_BLOCKED
    assert labels_of(update.body["blocks"]) == []


# -- no staff member takes it --------------------------------------------------------------


def test_timeout_message_pushed_once(start: Callable[..., Site]) -> None:
    site = start(handoff_timeout_minutes=0.01)
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()

    (push,) = site.line.wait_calls(PUSH, 1)
    site.wait_post(lambda c: "対応する人がいなかった" in c.body["text"])
    site.slack.wait_for_messages(1, "chat.update")
    time.sleep(1.5)  # several more checks run in this time

    city = site.app.state.assistant.kb.municipality
    assert push_texts(push) == messages.handoff_timeout(city)
    assert len(site.pushes()) == 1
    (update,) = site.slack.messages("chat.update")
    assert "対応する人がいなかったため" in status_of(update)
    assert "対応待ち" not in status_of(update)
    assert "対応待ち" not in update.body["text"]
    # Still open: staff can take it late or close it.
    assert labels_of(update.body["blocks"]) == ["対応する", "対応終了"]
    handoff = site.store().handoff_by_thread(root.result["channel"], root.result["ts"])
    assert handoff is not None
    assert handoff.timeout_notified
    assert handoff.status == "waiting"  # staff can still answer in the thread


def test_picked_handoff_gets_no_timeout_message(start: Callable[..., Site]) -> None:
    site = start(handoff_timeout_minutes=0.04)
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()
    site.click(root, slack_blocks.PICK_ACTION)
    site.slack.wait_for_messages(1, "chat.update")

    time.sleep(3.0)  # past the 2.4-second timeout

    assert site.pushes() == []


def test_line_only_handoff_without_slack(start: Callable[..., Site]) -> None:
    site = start(slack=False, handoff_timeout_minutes=0.01)
    ask = site.resident_says("職員と話したい")

    assert "職員におつなぎします" in reply_texts(site.reply_to(ask))[0]
    (push,) = site.line.wait_calls(PUSH, 1)
    assert "お急ぎの場合" in push_texts(push)
    # Without a staff channel no one can reply, so the bot takes the conversation back.
    again = site.resident_says("ご利用いただけないカードです")
    assert site.reply_to(again).body["messages"][-1]["quickReply"]["items"]
    assert site.slack.calls == []


# -- restart ------------------------------------------------------------------------------


def test_handoff_survives_restart(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()

    site = start()  # a new app on the same database
    site.staff_replies_in_thread(root, "お待たせしました。")
    (push,) = site.line.wait_calls(PUSH, 1)
    site.resident_says("よろしくお願いします")
    relayed = RELAY.format(text="よろしくお願いします")
    site.wait_post(lambda c: c.body["text"] == relayed)

    assert push_texts(push) == f"{messages.STAFF_PREFIX}お待たせしました。"
    assert push.body["to"] == RESIDENT


# -- teach-back ---------------------------------------------------------------------------


def test_teach_back_changes_next_match(start: Callable[..., Site]) -> None:
    site = start()
    before = site.resident_says(UNKNOWN_PHRASE)
    assert messages.OUT_OF_SCOPE in "".join(reply_texts(site.reply_to(before)))
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()

    site.click(root, slack_blocks.TEACH_ACTION)
    site.slack.wait_for(lambda: bool(site.slack.calls and _views(site.slack)))
    (opened,) = _views(site.slack)
    view = opened.result["view"]
    assert view["blocks"][0]["element"]["initial_value"] == UNKNOWN_PHRASE
    options = [
        o["value"] for g in view["blocks"][1]["element"]["option_groups"] for o in g["options"]
    ]
    assert {"1", "7", "11", "1a", "7a"} <= set(options)
    assert len(options) == len(set(options))

    missing = site.submit_view(view, _teach_values(UNKNOWN_PHRASE, None))
    assert missing.json()["response_action"] == "errors"
    site.submit_view(view, _teach_values(UNKNOWN_PHRASE, "7"))
    done = site.wait_post(lambda c: "言い方として登録しました" in c.body["text"])
    assert done.body["thread_ts"] == root.result["ts"]
    assert "エラー7「暗証番号の間違い」" in done.body["text"]
    assert [(x.target, x.text) for x in site.store().learned()] == [("7", UNKNOWN_PHRASE)]

    after = site.resident_says(UNKNOWN_PHRASE, user="U3")
    assert "暗証番号の間違い" in "".join(reply_texts(site.reply_to(after)))


def test_teach_prefill_drops_deleted_numbers(start: Callable[..., Site]) -> None:
    site = start()
    site.reply_to(site.resident_says(f"暗証番号1234を入れたら {UNKNOWN_PHRASE} "))
    site.reply_to(site.resident_says("職員と話したい"))
    root = site.handoff_post()

    site.click(root, slack_blocks.TEACH_ACTION)
    site.slack.wait_for(lambda: bool(_views(site.slack)))
    view = _views(site.slack)[0].result["view"]

    prefill = view["blocks"][0]["element"]["initial_value"]
    assert prefill == f"暗証番号を入れたら {UNKNOWN_PHRASE}"
    assert "削除" not in prefill
    for rejected in ("［削除］", " ［削除］ ［削除］ ", "   "):
        response = site.submit_view(view, _teach_values(rejected, "7"))
        errors = response.json()
        assert errors["response_action"] == "errors"
        assert set(errors["errors"]) == {slack_blocks.TEACH_TEXT_BLOCK}
    mask_only = site.submit_view(view, _teach_values("［削除］", "7")).json()
    assert mask_only["errors"][slack_blocks.TEACH_TEXT_BLOCK] == slack_blocks.TEACH_ONLY_MASK
    assert site.store().learned() == []

    site.submit_view(view, _teach_values(f"暗証番号［削除］を入れたら{UNKNOWN_PHRASE}", "7"))
    site.wait_post(lambda c: "言い方として登録しました" in c.body["text"])
    assert [x.text for x in site.store().learned()] == [f"暗証番号を入れたら{UNKNOWN_PHRASE}"]


def test_teach_button_on_unanswered_staff_question(start: Callable[..., Site]) -> None:
    site = start()
    ts = f"{time.time():.6f}"
    site.post_event(
        {
            "type": "app_mention",
            "user": STAFF,
            "text": f"<@{BOT_USER_ID}> 住民から「{UNKNOWN_PHRASE}」と電話",
            "ts": ts,
            "channel": STAFF_CHANNEL,
            "event_ts": ts,
        }
    )
    answer = site.wait_post(lambda c: c.body.get("thread_ts") == ts)
    assert "この表現を登録" in labels_of(answer.body["blocks"])

    site.click(answer, slack_blocks.TEACH_ACTION)
    site.slack.wait_for(lambda: bool(_views(site.slack)))
    view = _views(site.slack)[0].result["view"]
    assert UNKNOWN_PHRASE in view["blocks"][0]["element"]["initial_value"]
    site.submit_view(view, _teach_values(UNKNOWN_PHRASE, "7a"))
    done = site.wait_post(lambda c: "言い方として登録しました" in c.body["text"])

    assert done.body["thread_ts"] == ts
    assert "原因7a" in done.body["text"]


def _views(fake: FakeSlack) -> list[SlackCall]:
    return [c for c in fake.calls if c.method == "views.open"]


def _teach_values(phrase: str, target: str | None) -> dict[str, Any]:
    selected = {"text": {"type": "plain_text", "text": target}, "value": target} if target else None
    return {
        slack_blocks.TEACH_TEXT_BLOCK: {
            slack_blocks.TEACH_TEXT_ACTION: {"type": "plain_text_input", "value": phrase}
        },
        slack_blocks.TEACH_TARGET_BLOCK: {
            slack_blocks.TEACH_TARGET_ACTION: {"type": "static_select", "selected_option": selected}
        },
    }


# -- report -------------------------------------------------------------------------------


def test_report_counts_handoff_and_feedback(
    start: Callable[..., Site],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = start()
    site.reply_to(site.resident_says("ご利用いただけないカードです"))
    answer = site.reply_to(site.resident_says("住基カード"))
    assert [i["action"]["label"] for i in answer.body["messages"][-1]["quickReply"]["items"]] == [
        messages.RESOLVED,
        messages.NOT_RESOLVED,
    ]
    offer = site.reply_to(site.deliver(postback(json.dumps({"t": messages.NOT_RESOLVED}))))
    labels = [i["action"]["label"] for i in offer.body["messages"][-1]["quickReply"]["items"]]
    assert messages.HANDOFF_LABEL in labels
    site.reply_to(site.deliver(postback(json.dumps({"t": messages.HANDOFF_LABEL}))))
    site.handoff_post()

    assert madoguchi(["report", "--db", str(site.db_path)]) == 0
    printed = capsys.readouterr().out
    assert "職員への引き継ぎ: 1 件" in printed
    assert "解決した 0 件、解決しない 1 件" in printed

    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("MADOGUCHI_SLACK_API_URL", site.slack.api_url)
    monkeypatch.setenv("MADOGUCHI_SLACK_STAFF_CHANNEL", STAFF_CHANNEL)
    assert madoguchi(["report", "--db", str(site.db_path), "--slack"]) == 0
    posted = site.wait_post(lambda c: "利用状況" in c.body["text"])
    assert "職員への引き継ぎ: 1 件" in posted.body["text"]

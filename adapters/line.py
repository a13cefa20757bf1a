"""LINE channel: the city's official account, connected to the core through line-bot-sdk v3.

`POST /line/webhook` checks X-Line-Signature on the raw body before anything else, returns
200 at once and hands each event to a worker thread. The worker runs the core (Sudachi is
CPU-bound and must stay off the event loop) and sends one reply per event with the
Messaging API. When LINE rejects the reply token, the same messages go out as a push.

Photos are downloaded from the data API host into memory and read by the core; they are
never written to disk. While a conversation is handed to staff, the resident's messages go
to the staff thread through the bridge (adapters/bridge.py) and the bot sends nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import urllib3
from fastapi import APIRouter, FastAPI, Request, Response
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    MessagingApi,
    MessagingApiBlob,
    PostbackAction,
    PushMessageRequest,
    QuickReply,
    QuickReplyItem,
    ReplyMessageRequest,
    ShowLoadingAnimationRequest,
    TextMessage,
)
from linebot.v3.webhook import SignatureValidator
from linebot.v3.webhooks import (
    AudioMessageContent,
    Event,
    EventMode,
    FileMessageContent,
    FollowEvent,
    GroupSource,
    ImageMessageContent,
    JoinEvent,
    LocationMessageContent,
    MessageEvent,
    PostbackEvent,
    RoomSource,
    Source,
    StickerMessageContent,
    TextMessageContent,
    UnfollowEvent,
    UserMentionee,
    UserSource,
    VideoMessageContent,
)

from bot import messages
from bot.assistant import Assistant
from bot.models import Message, Reply
from bot.settings import Settings
from bot.store import Store

if TYPE_CHECKING:
    from adapters.bridge import Bridge

log = logging.getLogger(__name__)

# -- what residents read on LINE besides the core's replies ---------------------------------

TEXTS = {
    # Sent instead of the one-to-one greeting when the account joins a group or room. Only
    # messages that mention the account are read there, and photos cannot mention anyone.
    "join": (
        "こんにちは。{city}のコンビニ交付サービス（コンビニでの証明書の取得）の案内窓口です。\n"
        "このグループでは、メッセージの先頭に「@」でこのアカウントを付けて、マルチコピー機の"
        "画面に出ている文言を送ってください。原因と対処方法をご案内します。\n"
        "画面の写真は、グループでは読み取れません。写真で確かめたいときは、このアカウントとの"
        "1対1のトークに送ってください。"
    ),
    "image_external": (
        "ほかのアプリから共有された画像は読み取れません。コピー機の画面の写真をこのトークに"
        "直接送るか、画面に出ている文言を文字で送ってください。"
    ),
    "image_missing": "写真を受け取れませんでした。お手数ですが、もう一度送ってください。",
    "image_failed": (
        "写真を受け取れませんでした。少し時間をおいてもう一度送るか、"
        "画面に出ている文言を文字で送ってください。"
    ),
    "image_in_handoff": (
        "写真は職員にお届けできません。お手数ですが、画面に出ている文言を文字で送ってください。"
    ),
    "sticker": (
        "スタンプをありがとうございます。コピー機でエラーが出たときは、"
        "画面に出ている文言をそのまま文字で送ってください。"
    ),
    "audio": "音声メッセージは聞き取れません。画面に出ている文言を、文字で送ってください。",
    "video": "動画は確認できません。画面に出ている文言を、文字で送ってください。",
    "file": "ファイルは開けません。画面に出ている文言を、文字で送ってください。",
    "location": (
        "位置情報は使っていません。コピー機の画面に出ている文言を、文字で送ってください。"
    ),
    "menu_errors": (
        "コピー機の画面に出ているエラーの文言を、そのまま送ってください。"
        "原因と対処方法をご案内します。"
    ),
    "menu_usage": (
        "使い方: コンビニのマルチコピー機でエラーが出たら、画面の文言をそのまま送ってください。"
        "原因を絞るために質問することがあります。下に出るボタンを押すか、言葉でお答えください。"
        "「最初から」と送ると、やり直せます。\n"
        "暗証番号やマイナンバーは送らないでください。"
    ),
    "core_error": (
        "申し訳ありません。ただいまお答えを用意できませんでした。"
        "少し時間をおいて、もう一度送ってください。"
    ),
}

# Rich-menu buttons (knowledge/line-rich-menu.json); typing the same words works too, so a
# menu built in LINE Official Account Manager with plain text actions behaves the same.
MENU_LABELS = {"errors": "エラーを調べる", "usage": "使い方", "staff": "職員に相談"}
MENU_BY_LABEL = {label: key for key, label in MENU_LABELS.items()}

NON_TEXT: dict[type, str] = {
    StickerMessageContent: "sticker",
    AudioMessageContent: "audio",
    VideoMessageContent: "video",
    FileMessageContent: "file",
    LocationMessageContent: "location",
}

# -- Messaging API limits and our sending policy ---------------------------------------------

MAX_TEXT_UNITS = 5000  # per text message, in UTF-16 code units
MAX_MESSAGES = 5  # per reply or push call
MAX_QUICK_REPLY_ITEMS = 13
MAX_LABEL_GRAPHEMES = 20  # action labels are counted in grapheme clusters
MAX_ACTION_TEXT = 300  # postback data and displayText, in UTF-16 code units
ELLIPSIS = "…"
SENTENCE_ENDS = frozenset("。！？!?\n")

# The console's old "Verify" button sent these placeholder tokens; replying to them fails.
DUMMY_REPLY_TOKENS = frozenset({"0" * 32, "f" * 32})

MAX_ATTEMPTS = 4  # one call and up to three retries on 429 or 5xx
RETRY_BASE_SECONDS = 0.5  # doubled on every retry
RETRY_MAX_SECONDS = 8.0  # also caps a Retry-After header
REQUEST_TIMEOUT = (3.0, 10.0)  # connect, read; in seconds
CONTENT_TIMEOUT = (3.0, 20.0)  # for downloading a photo
LOADING_AFTER_SECONDS = 1.0
LOADING_SECONDS = 20  # the API accepts 5 to 60 in steps of 5

MAX_BODY_BYTES = 1 << 20
# The core and the SDK hold the GIL most of the time, so more threads add contention rather
# than speed. A few spare threads keep events moving while one waits on the LINE API.
WORKERS = 4


# -- LINE's ways of counting characters ------------------------------------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _joins_previous(cluster: str, char: str) -> bool:
    """Tell whether `char` continues the grapheme cluster `cluster` (UAX #29, simplified)."""
    code = ord(char)
    last = ord(cluster[-1])
    if unicodedata.category(char) in ("Mn", "Me", "Mc"):
        return True
    if code in (0x200D, 0xFF9E, 0xFF9F) or 0xFE00 <= code <= 0xFE0F:
        return True  # ZWJ, halfwidth (han)dakuten, variation selectors
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True  # emoji skin tones, emoji tag sequences
    if last == 0x200D:
        return True  # the next pictograph of a ZWJ sequence
    if cluster[-1] == "\r" and char == "\n":
        return True
    regional = range(0x1F1E6, 0x1F200)
    if code in regional and len(cluster) == 1 and last in regional:
        return True  # the second half of a flag
    hangul = 0x1100 <= last <= 0x11FF or 0xAC00 <= last <= 0xD7A3
    return hangul and (0x1160 <= code <= 0x11FF or 0xD7B0 <= code <= 0xD7FF)


def iter_graphemes(text: str) -> Iterator[str]:
    cluster = ""
    for char in text:
        if cluster and _joins_previous(cluster, char):
            cluster += char
            continue
        if cluster:
            yield cluster
        cluster = char
    if cluster:
        yield cluster


def truncate_label(label: str, limit: int = MAX_LABEL_GRAPHEMES) -> str:
    clusters = list(iter_graphemes(label))
    if len(clusters) <= limit:
        return label
    return "".join(clusters[: limit - 1]) + ELLIPSIS


def truncate_units(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-16 units without splitting a grapheme cluster."""
    prefix: list[str] = []
    used = 0
    for cluster in iter_graphemes(text):
        size = utf16_len(cluster)
        if used + size > limit:
            break
        prefix.append(cluster)
        used += size
    return "".join(prefix)


def split_text(text: str, limit: int = MAX_TEXT_UNITS, max_parts: int = MAX_MESSAGES) -> list[str]:
    """Split `text` into at most `max_parts` messages of at most `limit` UTF-16 units.

    Cuts fall after a sentence end or line break when one lies in the second half of the
    window, otherwise between grapheme clusters. Text beyond the last part is cut off with
    an ellipsis.
    """
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        if len(parts) == max_parts - 1:
            parts.append(truncate_units(rest, limit - utf16_len(ELLIPSIS)) + ELLIPSIS)
            break
        cut = _cut_index(rest, limit)
        head = rest[:cut].rstrip()
        if head:
            parts.append(head)
        rest = rest[cut:].lstrip()
    return parts


def overflows(text: str, limit: int = MAX_TEXT_UNITS, max_parts: int = MAX_MESSAGES) -> bool:
    """Tell whether split_text would cut `text` short, because it needs more messages."""
    return len(split_text(text, limit, max_parts + 1)) > max_parts


def _cut_index(text: str, limit: int) -> int:
    used = 0
    end = 0
    sentence_end = 0
    for cluster in iter_graphemes(text):
        size = utf16_len(cluster)
        if used + size > limit:
            break
        used += size
        end += len(cluster)
        if cluster[-1] in SENTENCE_ENDS:
            sentence_end = end
    return sentence_end if sentence_end > end // 2 else end


# -- Reply → LINE messages --------------------------------------------------------------------


def text_messages(text: str) -> list[TextMessage]:
    """Split plain text into LINE text messages (no quick reply)."""
    return [TextMessage(text=part) for part in split_text(text)]


def build_messages(reply: Reply) -> list[TextMessage]:
    """Render a core reply: the text in up to five messages, choices as quick reply buttons.

    Only the last message carries the quick reply because LINE shows no other. The choices
    are also written in the text (the core does that) because LINE for PC shows no buttons.
    """
    parts = split_text(reply.text) or [TEXTS["core_error"]]
    rendered = [TextMessage(text=part) for part in parts]
    rendered[-1].quick_reply = quick_reply(reply.choices, reply.fact_id)
    return rendered


def quick_reply(choices: list[str], fact_id: str | None) -> QuickReply | None:
    if not choices:
        return None
    if len(choices) > MAX_QUICK_REPLY_ITEMS:
        # The last choice is the catch-all ("わからない", "どれでもない"), so it stays.
        choices = [*choices[: MAX_QUICK_REPLY_ITEMS - 1], choices[-1]]
    return QuickReply(items=[QuickReplyItem(action=_choice_action(c, fact_id)) for c in choices])


def _choice_action(choice: str, fact_id: str | None) -> PostbackAction:
    # A postback (rather than a message action) needs no @mention in a group, and its data
    # names the question. displayText shows the full choice in the chat as the person's line.
    full = truncate_units(choice, MAX_ACTION_TEXT)
    data = encode_postback({"q": fact_id, "t": full} if fact_id else {"t": full})
    return PostbackAction(label=truncate_label(choice), data=data, displayText=full)


def encode_postback(data: dict[str, str]) -> str:
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if utf16_len(encoded) > MAX_ACTION_TEXT:
        # Only the answer text matters to the core; drop the question id before the answer.
        encoded = json.dumps(
            {"t": truncate_units(data["t"], MAX_ACTION_TEXT - 10)}, ensure_ascii=False
        )
    return encoded


def decode_postback(raw: str) -> dict[str, str] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("menu"), str) or isinstance(data.get("t"), str):
        return {k: v for k, v in data.items() if isinstance(v, str)}
    return None


# -- who is talking ---------------------------------------------------------------------------


def user_key(source: Source | None) -> str:
    """Key a conversation: one per person, and one per person inside each group or room."""
    if isinstance(source, GroupSource):
        return f"group:{source.group_id}:{source.user_id or 'anon'}"
    if isinstance(source, RoomSource):
        return f"room:{source.room_id}:{source.user_id or 'anon'}"
    if isinstance(source, UserSource) and source.user_id:
        return source.user_id
    return "anon"


def chat_id(source: Source | None) -> str | None:
    """Return the push target for the chat an event came from."""
    if isinstance(source, GroupSource):
        return source.group_id
    if isinstance(source, RoomSource):
        return source.room_id
    if isinstance(source, UserSource):
        return source.user_id
    return None


def push_target(key: str) -> str | None:
    """Return the push target for a conversation key made by user_key: the person, group or room."""
    kind, _, rest = key.partition(":")
    if kind in ("group", "room") and rest:
        return rest.split(":", 1)[0]
    if key.startswith("U"):
        return key
    return None


def hash_user(key: str) -> str:
    # Same digest as the core's turn log, so both log lines of one turn can be matched.
    return hashlib.sha256(f"line:{key}".encode()).hexdigest()[:12]


def mentions_self(content: TextMessageContent) -> bool:
    mentionees = content.mention.mentionees if content.mention else []
    return any(isinstance(m, UserMentionee) and m.is_self for m in mentionees)


def strip_mentions(content: TextMessageContent) -> str:
    """Remove every @mention from the text.

    LINE documents mention positions without naming their unit. Its text limits count UTF-16
    units, so those are tried first, then code points, then the surface `@name`.
    """
    text = content.text
    spans = sorted(
        ((m.index, m.length) for m in (content.mention.mentionees if content.mention else [])),
        reverse=True,
    )
    units = text.encode("utf-16-le", "surrogatepass")

    def unit_slice(start: int, end: int) -> str:
        return units[2 * start : 2 * end].decode("utf-16-le", "replace")

    if all(unit_slice(i, i + n).startswith(("@", "＠")) for i, n in spans):
        for i, n in spans:
            units = units[: 2 * i] + units[2 * (i + n) :]
        return units.decode("utf-16-le", "surrogatepass").strip()
    if all(text[i : i + n].startswith(("@", "＠")) for i, n in spans):
        for i, n in spans:
            text = text[:i] + text[i + n :]
        return text.strip()
    # NOTE: a display name containing spaces leaves its tail in the text on this path.
    words = [w for w in text.split() if not w.startswith(("@", "＠"))]
    return " ".join(words)


# -- sending ----------------------------------------------------------------------------------


class ContentError(Exception):
    """A photo that could not be downloaded; `missing` is True when LINE returned 404."""

    def __init__(self, missing: bool, detail: str) -> None:
        super().__init__(detail)
        self.missing = missing


class Sender:
    """Messaging API calls with bounded retries: one reply per event, push as a fallback.

    Message content (photos) comes from the separate data API host.
    """

    def __init__(self, settings: Settings) -> None:
        token = settings.line_channel_access_token
        if token is None:
            raise ValueError("LINE_CHANNEL_ACCESS_TOKEN is missing")
        secret = token.get_secret_value()
        self._client = ApiClient(Configuration(host=settings.line_api_url, access_token=secret))
        self._api = MessagingApi(self._client)
        data_config = Configuration(host=settings.line_data_api_url, access_token=secret)
        self._data_client = ApiClient(data_config)
        self._blob = MessagingApiBlob(self._data_client)
        self.push_fallback = settings.line_push_fallback

    def close(self) -> None:
        for client in (self._client, self._data_client):
            client.rest_client.pool_manager.clear()
            client.close()

    def fetch_content(self, message_id: str) -> bytes:
        """Download the content of a message (a photo) into memory.

        NOTE: line-bot-sdk reads the whole body before returning, so the 10 MB photo limit
        is applied by the core after the download, not during it.
        """
        try:
            data = self._blob.get_message_content(message_id, _request_timeout=CONTENT_TIMEOUT)
        except ApiException as error:
            raise ContentError(error.status == 404, _describe(error)) from None
        except urllib3.exceptions.HTTPError as error:
            raise ContentError(False, _describe(error)) from None
        return bytes(data)

    def send(self, reply_token: str, to: str | None, outgoing: list[TextMessage]) -> str:
        """Send `outgoing` and return the outcome for the event log line."""
        outcome = self._reply(reply_token, outgoing)
        if outcome != "token rejected":
            return outcome
        if not self.push_fallback or not to:
            log.warning("reply token rejected; push fallback is off or no chat id, nothing sent")
            return "failed: reply token rejected"
        log.warning("reply token rejected; sending the reply as a push instead")
        return self.push(to, outgoing)

    def show_loading(self, user_id: str) -> None:
        request = ShowLoadingAnimationRequest(chatId=user_id, loadingSeconds=LOADING_SECONDS)
        try:
            self._api.show_loading_animation(request, _request_timeout=REQUEST_TIMEOUT)
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            log.info("loading animation failed: %s", _describe(error))

    def _reply(self, token: str, outgoing: list[TextMessage]) -> str:
        request = ReplyMessageRequest(replyToken=token, messages=outgoing)
        uncertain = False
        for attempt in range(MAX_ATTEMPTS):
            try:
                self._api.reply_message(request, _request_timeout=REQUEST_TIMEOUT)
                return "replied"
            except ApiException as error:
                if error.status == 400 and _is_reply_token_error(error):
                    if not uncertain:
                        return "token rejected"
                    # After a 5xx the first call may have gone through and used the token.
                    # A push now could deliver the reply twice, so nothing more is sent.
                    log.warning("reply token rejected after a 5xx; the reply may have arrived")
                    return "failed: reply uncertain"
                if not _retryable(error) or attempt == MAX_ATTEMPTS - 1:
                    log.error("reply failed: %s", _describe(error))
                    return f"failed: reply status {error.status}"
                uncertain = uncertain or error.status >= 500
                delay = _backoff(attempt, error)
                log.warning(
                    "reply failed: %s; retry %d in %.1f s", _describe(error), attempt + 1, delay
                )
                time.sleep(delay)
            except urllib3.exceptions.HTTPError as error:
                # The request may have reached LINE, and a reply token works only once.
                log.error("reply failed: %s; not retried", _describe(error))
                return "failed: reply network error"
        return "failed: reply"

    def push(self, to: str, outgoing: list[TextMessage], retry_key: str | None = None) -> str:
        """Push `outgoing` to a person, group or room and return the outcome.

        LINE accepts a push with a given `retry_key` (a UUID) only once. A caller that may send
        the same message twice, such as for a redelivered event, passes a key derived from that
        event. Without one, each call gets a new key.
        """
        request = PushMessageRequest(to=to, messages=outgoing)
        # One key for all attempts: LINE accepts a retry key once and returns 409 after that.
        retry_key = retry_key or str(uuid.uuid4())
        for attempt in range(MAX_ATTEMPTS):
            try:
                self._api.push_message(
                    request, x_line_retry_key=retry_key, _request_timeout=REQUEST_TIMEOUT
                )
                return "pushed"
            except ApiException as error:
                if error.status == 409:
                    return "pushed"
                if not _retryable(error) or attempt == MAX_ATTEMPTS - 1:
                    log.error("push failed: %s", _describe(error))
                    return f"failed: push status {error.status}"
                delay = _backoff(attempt, error)
                log.warning(
                    "push failed: %s; retry %d in %.1f s", _describe(error), attempt + 1, delay
                )
                time.sleep(delay)
            except urllib3.exceptions.HTTPError as error:
                if attempt == MAX_ATTEMPTS - 1:
                    log.error("push failed: %s", _describe(error))
                    return "failed: push network error"
                delay = _backoff(attempt, None)
                log.warning(
                    "push failed: %s; retry %d in %.1f s", _describe(error), attempt + 1, delay
                )
                time.sleep(delay)
        return "failed: push"


def _retryable(error: ApiException) -> bool:
    return error.status == 429 or (error.status is not None and error.status >= 500)


def _backoff(attempt: int, error: ApiException | None) -> float:
    delay = RETRY_BASE_SECONDS * 2**attempt
    retry_after = error.headers.get("Retry-After") if error is not None and error.headers else None
    if retry_after and retry_after.isdigit():
        delay = max(delay, float(retry_after))
    return min(delay, RETRY_MAX_SECONDS)


def _line_error_message(error: ApiException) -> str:
    try:
        body = json.loads(error.body or b"{}")
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""


def _is_reply_token_error(error: ApiException) -> bool:
    return "reply token" in _line_error_message(error).lower()


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"status={error.status} message={_line_error_message(error)!r}"
    return type(error).__name__


class _Loading:
    """Show LINE's loading animation if the core takes longer than LOADING_AFTER_SECONDS."""

    def __init__(self, sender: Sender, user_id: str) -> None:
        self._sender = sender
        self._user_id = user_id
        self._lock = threading.Lock()
        self._stopped = False
        self._timer = threading.Timer(LOADING_AFTER_SECONDS, self._show)
        self._timer.daemon = True
        self._timer.start()

    def _show(self) -> None:
        with self._lock:
            if not self._stopped:
                self._sender.show_loading(self._user_id)

    def stop(self) -> None:
        # Holding the lock waits for a call in flight, so the animation never follows the reply.
        self._timer.cancel()
        with self._lock:
            self._stopped = True


# -- events -----------------------------------------------------------------------------------


class LineChannel:
    """Turn one LINE webhook event into at most one core call and at most one reply."""

    def __init__(
        self, assistant: Assistant, store: Store, sender: Sender, bridge: Bridge | None = None
    ) -> None:
        self.assistant = assistant
        self.store = store
        self.sender = sender
        self.bridge = bridge

    def handle(self, event: Event) -> None:
        started = time.perf_counter()
        try:
            outcome = self._dispatch(event)
        except Exception:
            log.exception("line event failed type=%s", event.type)
            outcome = "failed: error"
        log.info(
            "line event type=%s user=%s outcome=%s ms=%.1f",
            _event_type(event),
            hash_user(user_key(event.source)),
            outcome,
            (time.perf_counter() - started) * 1000,
        )

    def _dispatch(self, event: Event) -> str:
        if not self.store.first_time(f"line:{event.webhook_event_id}"):
            return "ignored: already processed"
        if isinstance(event, UnfollowEvent):
            # Blocked by the person: forget the conversation. Unfollow has no reply token.
            key = user_key(event.source)
            self.assistant.reset("line", key)
            handoff = self.store.handoff_for(f"line:{key}")
            if handoff is not None and self.store.close_handoff(handoff.id):
                if self.bridge is not None:
                    self.bridge.resident_blocked(handoff)
                return "state deleted, handoff closed"
            return "state deleted"
        if event.mode == EventMode.STANDBY:
            return "ignored: standby mode"
        if getattr(event, "reply_token", None) in DUMMY_REPLY_TOKENS:
            log.warning("line event with a placeholder reply token ignored")
            return "ignored: placeholder reply token"
        if isinstance(event, MessageEvent):
            return self._on_message(event)
        if isinstance(event, PostbackEvent):
            return self._on_postback(event)
        if isinstance(event, FollowEvent):
            # A returning person (isUnblocked) starts afresh, like a new friend.
            self.assistant.reset("line", user_key(event.source))
            return self._send_text(event, self._greeting())
        if isinstance(event, JoinEvent):
            city = self.assistant.kb.municipality.name
            return self._send_text(event, TEXTS["join"].format(city=city))
        return "ignored: event type not handled"

    def _on_message(self, event: MessageEvent) -> str:
        content = event.message
        in_group = isinstance(event.source, (GroupSource, RoomSource))
        if isinstance(content, TextMessageContent):
            text = content.text
            if in_group:
                if not mentions_self(content):
                    return "ignored: not mentioned"
                text = strip_mentions(content)
            menu = MENU_BY_LABEL.get(text.strip())
            if menu is not None:
                return self._on_menu(event, menu)
            return self._ask_core(event, text)
        if in_group:
            # Nothing but a text can mention the account, so a photo or sticker in a group
            # may be meant for anyone there and gets no reply (the greeting says so).
            return "ignored: no text in a group"
        if isinstance(content, ImageMessageContent):
            return self._on_image(event, content)
        kind = NON_TEXT.get(type(content))
        if kind is None:
            return "ignored: message type not handled"
        return self._send_text(event, TEXTS[kind])

    def _on_image(self, event: MessageEvent, content: ImageMessageContent) -> str:
        # Several photos sent at once arrive as one event each with a shared imageSet id.
        # Only the first one to arrive is read and gets a reply.
        image_set = content.image_set
        if image_set is not None and not self.store.first_time(f"line:imageset:{image_set.id}"):
            return "ignored: rest of an image set"
        provider = content.content_provider
        if provider is not None and provider.type == "external":
            # The photo lives on another service's server; the content API has nothing.
            return self._send_text(event, TEXTS["image_external"])
        handoff = self.store.handoff_for(f"line:{user_key(event.source)}")
        if handoff is not None:
            # The core reads photos without checking for a hand-off, so the check is made here.
            if self.bridge is not None:
                self.bridge.resident_photo(handoff)
            return "photo during a handoff, " + self._send_text(event, TEXTS["image_in_handoff"])
        try:
            image = self.sender.fetch_content(content.id)
        except ContentError as error:
            log.warning("line photo download failed: %s", error)
            key = "image_missing" if error.missing else "image_failed"
            return "photo not downloaded, " + self._send_text(event, TEXTS[key])
        message = Message(
            channel="line", user=user_key(event.source), image=image, at=_event_time(event)
        )
        return self._run_core(event, message)

    def _on_postback(self, event: PostbackEvent) -> str:
        data = decode_postback(event.postback.data)
        if data is None:
            return "ignored: unknown postback data"
        if "menu" in data:
            return self._on_menu(event, data["menu"])
        # The answer goes to the core as the label text; with the question still pending
        # the core reads it as that question's answer.
        return self._ask_core(event, data["t"])

    def _on_menu(self, event: MessageEvent | PostbackEvent, menu: str) -> str:
        if menu == "errors":
            self.assistant.reset("line", user_key(event.source))
            return self._send_text(event, TEXTS["menu_errors"])
        if menu == "usage":
            return self._send_text(event, TEXTS["menu_usage"])
        if menu == "staff":
            # The same as typing the label: the core opens a hand-off to staff.
            return self._ask_core(event, messages.HANDOFF_LABEL)
        return "ignored: unknown menu item"

    def _ask_core(self, event: MessageEvent | PostbackEvent, text: str) -> str:
        message = Message(
            channel="line", user=user_key(event.source), text=text, at=_event_time(event)
        )
        return self._run_core(event, message)

    def _run_core(self, event: MessageEvent | PostbackEvent, message: Message) -> str:
        source = event.source
        loading = None
        if isinstance(source, UserSource) and source.user_id:
            loading = _Loading(self.sender, source.user_id)
        try:
            reply = self.assistant.respond(message)
        except Exception:
            log.exception("core failed on a line message")
            return "core failed, apology " + self._send_text(event, TEXTS["core_error"])
        finally:
            if loading is not None:
                loading.stop()
        return self._deliver(event, message, reply)

    def _deliver(self, event: Event, message: Message, reply: Reply) -> str:
        """Send a core reply, and carry hand-off moves to the staff channel."""
        if reply.relay:
            # Staff are handling the conversation: the bot stays quiet.
            if self.bridge is None:
                return "ignored: handoff open, no bridge"
            return self.bridge.relay(reply)
        outcome = self._send(event, build_messages(reply))
        if self.bridge is None:
            return outcome
        if reply.kind == "handoff" and reply.handoff_id:
            # The notice goes first; posting to Slack may take a moment.
            outcome = f"{outcome}, {self.bridge.open(reply, message)}"
        elif reply.closed_handoff_id:
            self.bridge.resident_closed(reply.closed_handoff_id)
            outcome = f"{outcome}, handoff closed"
        return outcome

    def _greeting(self) -> str:
        return messages.greeting(self.assistant.kb.municipality)

    def _send_text(self, event: Event, text: str) -> str:
        return self._send(event, [TextMessage(text=part) for part in split_text(text)])

    def _send(self, event: Event, rendered: list[TextMessage]) -> str:
        token = getattr(event, "reply_token", None)
        if not token:
            return "ignored: no reply token"
        return self.sender.send(token, chat_id(event.source), rendered)


def _event_time(event: Event) -> datetime:
    return datetime.fromtimestamp(event.timestamp / 1000, tz=UTC)


def _event_type(event: Event) -> str:
    if isinstance(event, MessageEvent):
        return f"message/{event.message.type}"
    return str(event.type)


# -- per-conversation ordering ----------------------------------------------------------------


class SerialExecutor:
    """Run jobs on a thread pool, one at a time per key and in the order they arrived.

    Two messages from one person are handled in order, and different people in parallel.
    """

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="line")
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[Callable[[], None]]] = {}

    def submit(self, key: str, job: Callable[[], None]) -> None:
        with self._lock:
            queue = self._waiting.get(key)
            if queue is not None:
                queue.append(job)
                return
            self._waiting[key] = deque()
        self._pool.submit(self._drain, key, job)

    def _drain(self, key: str, job: Callable[[], None]) -> None:
        while True:
            try:
                job()
            except Exception:
                log.exception("line worker job failed")
            with self._lock:
                queue = self._waiting[key]
                if not queue:
                    del self._waiting[key]
                    return
                job = queue.popleft()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


# -- webhook ----------------------------------------------------------------------------------


def create_router(
    settings: Settings, assistant: Assistant, store: Store, bridge: Bridge | None = None
) -> APIRouter:
    """Build the `/line/webhook` route; its lifespan stops the workers and the API client.

    With a `bridge`, hand-offs reach the staff channel; without one, the resident still gets
    the core's notices but nothing is relayed.
    """
    secret = settings.line_channel_secret
    if secret is None or settings.line_channel_access_token is None:
        raise ValueError("LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN must both be set")
    validator = SignatureValidator(secret.get_secret_value())
    sender = Sender(settings)
    channel = LineChannel(assistant, store, sender, bridge)
    executor = SerialExecutor(WORKERS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(executor.shutdown)
        sender.close()

    router = APIRouter(lifespan=lifespan)

    @router.post("/line/webhook")
    async def webhook(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return _rejected(413, "body too large")
        signature = request.headers.get("x-line-signature")
        if not signature or not _signature_valid(validator, body, signature):
            log.warning("line webhook rejected: missing or invalid X-Line-Signature")
            return _rejected(400, "invalid signature")
        raw_events = _raw_events(body)
        if raw_events is None:
            log.warning("line webhook rejected: body is not a LINE webhook payload")
            return _rejected(400, "invalid payload")
        for raw in raw_events:
            event = _parse_event(raw)
            if event is not None:
                executor.submit(user_key(event.source), partial(channel.handle, event))
        return Response(status_code=200)

    return router


async def _read_body(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _signature_valid(validator: SignatureValidator, body: bytes, signature: str) -> bool:
    # The SDK re-encodes the text as UTF-8, which gives back the exact bytes LINE signed.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(validator.validate(text, signature))


def _raw_events(body: bytes) -> list[dict[str, Any]] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return None
    events: list[dict[str, Any]] = payload["events"]
    if not all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in events):
        return None
    return events


def _parse_event(raw: dict[str, Any]) -> Event | None:
    """Build the SDK model of one event, or log and skip a type or shape the SDK lacks.

    Skipping keeps the other events of the same delivery, and new event types that LINE
    adds later do not turn into errors.
    """
    try:
        event: Event = Event.from_dict(raw)
    except (ValueError, TypeError, KeyError) as error:
        log.info("line event ignored: type=%r not handled (%s)", raw["type"], type(error).__name__)
        return None
    return event


def _rejected(status: int, reason: str) -> Response:
    return Response(
        content=json.dumps({"detail": reason}), status_code=status, media_type="application/json"
    )

"""Slack channel for city staff: Events API over HTTP, or Socket Mode, through slack-bolt.

Slack retries a request that is not acknowledged within 3 seconds, so nothing slow runs
before the acknowledgement. Bolt acknowledges events itself, and the command and button
listeners call ack() first (process_before_response stays False). The core then runs on a
separate worker pool. Slack may still deliver one event more than once, so each event id
is answered once, whatever the transport or the retry headers say.

The staff channel also carries hand-offs from residents (adapters/bridge.py): replies in a
hand-off thread go to the resident, and the hand-off message has 「対応する」「対応終了」 and
「この表現を登録」 buttons. Photos shared in a mention or a direct message are downloaded
into memory with the bot token, only from Slack's own hosts, and read by the core.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from fastapi import APIRouter, Request, Response
from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from starlette.concurrency import run_in_threadpool

from adapters import slack_blocks
from adapters.bridge import CLOSED as HANDOFF_CLOSED
from adapters.bridge import Bridge
from bot import messages
from bot.assistant import Assistant
from bot.models import Message, Reply
from bot.ocr import MAX_IMAGE_BYTES
from bot.privacy import redact
from bot.settings import Settings
from bot.store import Handoff, Store

log = logging.getLogger(__name__)

COMMAND = "/madoguchi"
SIGNATURE_MAX_AGE_SECONDS = 5 * 60
CHOICE_ACTION = re.compile(rf"^{slack_blocks.CHOICE_ACTION_PREFIX}\d+$")
# Message subtypes that are still a person writing; every other subtype (bot_message,
# message_changed, message_deleted, channel_join, …) is ignored.
PERSON_SUBTYPES = {None, "file_share", "thread_broadcast"}
# A direct message outside any thread continues one conversation per DM channel.
DM_ROOT = "dm"
COMMAND_ROOT = "command"
# Threads that run the core and post replies. The core is CPU-bound, so more threads than
# cores buy little; they only keep one slow reply from holding up the others.
REPLY_WORKERS = 4
# Replies on which staff can register the question's wording: the bot did not know it.
TEACHABLE_KINDS = ("fallback", "clarify")

# Shared files are fetched only from Slack's file host or from the Web API host, which tests
# point at a local fake. Any other URL in an event is rejected before a request is made.
SLACK_FILE_HOST = "files.slack.com"
MAX_FILE_REDIRECTS = 2
FILE_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
FILE_REFUSED = (
    "この写真は Slack 以外の場所にあるため、取得しませんでした。"
    "写真を Slack に直接添付するか、画面の文言を文字で送ってください。"
)
FILE_FAILED = (
    "添付の写真を取得できませんでした。もう一度添付するか、画面の文言を文字で送ってください。"
)


def create_router(
    settings: Settings, assistant: Assistant, store: Store, bridge: Bridge | None = None
) -> APIRouter:
    """Build the router for POST /slack/events (events, the slash command and button clicks)."""
    app = build_app(settings, assistant, store, bridge=bridge)
    assert settings.slack_signing_secret is not None  # build_app rejects HTTP without it
    signing_secret = settings.slack_signing_secret.get_secret_value().encode()
    router = APIRouter()

    @router.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        # The signature covers the raw bytes, so it is checked before the body is parsed:
        # an unsigned request gets 401 whatever it contains.
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not _signature_valid(signing_secret, body, timestamp, signature):
            log.info(
                "slack request rejected: invalid signature or stale timestamp=%.20r", timestamp
            )
            return _rejected(401, "invalid request")
        bolt_request = _parse_request(request, body)
        if bolt_request is None:
            log.warning("slack request rejected: signed body is not a Slack payload")
            return _rejected(400, "invalid payload")
        # App.dispatch blocks until the listener calls ack(), so it runs off the event loop.
        bolt_response = await run_in_threadpool(app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    return router


def _signature_valid(signing_secret: bytes, body: bytes, timestamp: str, signature: str) -> bool:
    """Check Slack's v0 signature, an HMAC-SHA256 of `v0:timestamp:body`, and the timestamp.

    A timestamp more than 5 minutes from now is rejected, as Slack recommends. The HMAC is
    computed over the raw bytes here because slack_sdk's SignatureVerifier (3.x) decodes
    the body as UTF-8 first, and raises on other bytes or on a timestamp that is no number.
    """
    if not (timestamp.isascii() and timestamp.isdigit() and signature.startswith("v0=")):
        return False
    if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(signing_secret, base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def _parse_request(request: Request, body: bytes) -> BoltRequest | None:
    """Build Bolt's request from a signed body, or return None when it is not a Slack payload.

    Slack sends UTF-8 JSON (events) or a form whose fields, or whose `payload` field, hold
    one JSON object (commands, button clicks, modal submissions).
    """
    try:
        bolt_request = to_bolt_request(request, body)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        # ValueError covers bytes that are not UTF-8 and text that is not JSON. The others
        # come from Bolt reading ids out of JSON that is not an object or not nested as
        # Slack nests it, such as `[1, 2]`.
        return None
    if not isinstance(bolt_request.body, dict):
        return None
    return bolt_request


def _rejected(status: int, reason: str) -> Response:
    return Response(
        content=json.dumps({"error": reason}), status_code=status, media_type="application/json"
    )


@dataclass
class SocketMode:
    """A running Socket Mode connection and the time it last heard from Slack."""

    handler: SocketModeHandler
    started: float = field(default_factory=time.time)
    last_message: float = 0.0

    def last_activity(self) -> float:
        """Return the Unix time of the last envelope or pong received (start time if none)."""
        session = self.handler.client.current_session
        pong = (session.last_ping_pong_time if session is not None else None) or 0.0
        return max(self.started, self.last_message, pong)

    def healthy(self, max_silence_seconds: float = 120.0) -> bool:
        """Tell whether Slack was heard from recently.

        A connection can look open while no events arrive any more (for example after a
        network change), so a health check should use this rather than is_connected().
        """
        return time.time() - self.last_activity() <= max_silence_seconds

    def close(self) -> None:
        self.handler.close()


def start_socket_mode(
    settings: Settings,
    assistant: Assistant,
    store: Store,
    ping_interval: float = 10.0,
    bridge: Bridge | None = None,
) -> SocketMode:
    """Open a Socket Mode connection in background threads and return it; close() stops it.

    The WebSocket URL comes from apps.connections.open on MADOGUCHI_SLACK_API_URL, which
    raises SlackApiError here when the token is rejected. A failed WebSocket handshake is
    only logged: the client retries, checking the connection every `ping_interval` seconds,
    and also reconnects by itself whenever the connection drops later.
    """
    if settings.slack_app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN (an app-level token, xapp-…)")
    app = build_app(settings, assistant, store, socket_mode=True, bridge=bridge)
    handler = SocketModeHandler(
        app,
        app_token=settings.slack_app_token.get_secret_value(),
        ping_interval=ping_interval,
    )
    running = SocketMode(handler)
    handler.client.on_message_listeners.append(lambda _raw: _touch(running))
    try:
        handler.connect()
    except Exception:
        handler.close()
        raise
    log.info(
        "slack socket mode connected knowledge=%s digest=%s",
        assistant.kb.directory,
        _knowledge_digest(assistant),
    )
    return running


def _touch(running: SocketMode) -> None:
    running.last_message = time.time()


def build_app(
    settings: Settings,
    assistant: Assistant,
    store: Store,
    socket_mode: bool = False,
    bridge: Bridge | None = None,
) -> App:
    """Build the Bolt app. It calls auth.test, so the Web API must be reachable.

    Over HTTP every request must carry a valid signature; Socket Mode requests arrive over
    the app's own authenticated WebSocket and carry none. Without a `bridge` one is built
    from the settings, so hand-off threads and buttons work in either case.
    """
    if settings.slack_bot_token is None:
        raise ValueError("the Slack channel needs SLACK_BOT_TOKEN (a bot token, xoxb-…)")
    secret = settings.slack_signing_secret
    if not socket_mode and secret is None:
        raise ValueError("Slack over HTTP needs SLACK_SIGNING_SECRET to verify requests")
    # Bolt (slack-bolt 1.30) reads SLACK_BOT_TOKEN from the environment whenever no token is
    # passed, and warns that it is unused when a client is passed too. So only the token is
    # passed, and the client Bolt builds from it is pointed at the configured API URL before
    # any call is made. The token is checked with auth.test right after, on that client.
    app = App(
        token=settings.slack_bot_token.get_secret_value(),
        token_verification_enabled=False,
        # Bolt's own verifier (slack-bolt 1.30) logs the raw request body at INFO on failure,
        # so a quieter middleware with the same checks takes its place.
        request_verification_enabled=False,
        before_authorize=None if secret is None else _signature_check(secret.get_secret_value()),
        process_before_response=False,
    )
    app.client.base_url = settings.slack_api_url
    app.client.timeout = 10
    app.client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    app.client.auth_test()
    staff = _StaffChannel(settings, assistant, store, bridge or Bridge(settings, assistant, store))
    app.event("app_mention")(staff.on_mention)
    app.event("message")(staff.on_message)
    app.command(COMMAND)(staff.on_command)
    app.action(CHOICE_ACTION)(staff.on_choice)
    app.action(slack_blocks.PICK_ACTION)(staff.on_pick)
    app.action(slack_blocks.CLOSE_ACTION)(staff.on_close)
    app.action(slack_blocks.TEACH_ACTION)(staff.on_teach)
    app.view(slack_blocks.TEACH_VIEW)(staff.on_teach_submit)
    _ignore_the_rest(app)
    return app


def _ignore_the_rest(app: App) -> None:
    """Acknowledge every request no listener above handles, so Slack gets 200 and not 404.

    Bolt would return 404 and log the whole request body as a warning. Here each unhandled
    kind is logged once at INFO and then at DEBUG.
    """
    seen: set[str] = set()
    lock = threading.Lock()
    anything = re.compile(".*")

    def ignore(ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        kind = _request_kind(body)
        with lock:
            first = kind not in seen
            seen.add(kind)
        log.log(logging.INFO if first else logging.DEBUG, "slack request ignored: %s", kind)

    app.event(anything)(ignore)
    app.command(anything)(ignore)
    app.shortcut(anything)(ignore)
    app.action(anything)(ignore)
    app.view(anything)(ignore)
    app.view_closed(anything)(ignore)
    app.options(anything)(ignore)


def _request_kind(body: dict[str, Any]) -> str:
    """Name a request by its type and its event type, command, callback id or action id."""
    kind = str(body.get("type") or ("slash_command" if "command" in body else "unknown"))
    event = body.get("event")
    view = body.get("view")
    actions = body.get("actions")
    if isinstance(event, dict):
        detail = event.get("type")
    elif "command" in body:
        detail = body.get("command")
    elif isinstance(view, dict):
        detail = view.get("callback_id")
    elif isinstance(actions, list) and actions and isinstance(actions[0], dict):
        detail = actions[0].get("action_id")
    else:
        detail = body.get("callback_id") or body.get("action_id")
    return f"{kind}/{str(detail)[:60]}" if detail else kind


def _signature_check(signing_secret: str) -> Callable[..., BoltResponse]:
    """Build a middleware that rejects HTTP requests with a bad signature or a stale timestamp.

    The checks are those of the /slack/events route (see _signature_valid), for callers that
    dispatch HTTP requests to the app some other way. Socket Mode requests carry no signature.
    """
    secret = signing_secret.encode()

    def check_signature(
        req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        if req.mode == "socket_mode":
            return next()
        timestamp = req.headers.get("x-slack-request-timestamp", [""])[0]
        signature = req.headers.get("x-slack-signature", [""])[0]
        if _signature_valid(secret, req.raw_body.encode(), timestamp, signature):
            return next()
        log.info("slack request rejected: invalid signature or stale timestamp=%.20r", timestamp)
        return BoltResponse(status=401, body={"error": "invalid request"})

    return check_signature


class _StaffChannel:
    """Bolt listeners: convert Slack payloads to core messages and replies to Block Kit.

    Listeners run on Bolt's listener thread pool (5 threads in slack-bolt 1.30), which also
    runs the ack() of commands and clicks. So the listeners only acknowledge and check for
    duplicates, and they hand the core call and the Web API calls to a pool of their own.
    """

    def __init__(
        self, settings: Settings, assistant: Assistant, store: Store, bridge: Bridge
    ) -> None:
        self.assistant = assistant
        self.store = store
        self.bridge = bridge
        assert settings.slack_bot_token is not None
        self.files = FileFetcher(
            settings.slack_bot_token.get_secret_value(), settings.slack_api_url
        )
        self.workers = ThreadPoolExecutor(REPLY_WORKERS, thread_name_prefix="slack-reply")

    def _submit(self, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("slack reply failed")

        self.workers.submit(run)

    # -- events ---------------------------------------------------------------------------

    def on_mention(
        self, body: dict[str, Any], event: dict[str, Any], client: WebClient, request: BoltRequest
    ) -> None:
        delivery = _Delivery("app_mention", body, event, _retry_num(request))
        # A mention is a question to the bot, also inside a hand-off thread, where it is
        # answered in the thread and not sent to the resident.
        root = event.get("thread_ts") or event.get("ts")
        self._answer_event(delivery, client, root, reply_in_thread=True)

    def on_message(
        self,
        body: dict[str, Any],
        event: dict[str, Any],
        client: WebClient,
        request: BoltRequest,
        context: BoltContext,
    ) -> None:
        delivery = _Delivery("message", body, event, _retry_num(request))
        mentioned = f"<@{context.bot_user_id}>" in str(event.get("text") or "")
        if self._in_handoff_thread(event):
            if mentioned:
                # The app_mention event for the same post answers it.
                delivery.log("ignored:mention_in_handoff")
                return
            self._relay_staff_reply(delivery)
            return
        # In channels a question reaches the bot as app_mention. The same post may also
        # arrive as a channel message event, which is dropped so that it is answered once.
        if event.get("channel_type") != "im":
            delivery.log("ignored:not_dm")
            return
        thread = event.get("thread_ts")
        self._answer_event(delivery, client, thread or DM_ROOT, bool(thread))

    # -- hand-off threads -----------------------------------------------------------------

    def _in_handoff_thread(self, event: dict[str, Any]) -> bool:
        channel = event.get("channel")
        thread_ts = event.get("thread_ts")
        if not (channel and thread_ts) or thread_ts == event.get("ts"):
            return False
        return self.bridge.handoff_in_thread(str(channel), str(thread_ts)) is not None

    def _relay_staff_reply(self, delivery: _Delivery) -> None:
        """Send a staff member's reply in a hand-off thread to the resident."""
        event = delivery.event
        skip = self._skip_reason(delivery.body, event)
        if skip is not None:
            delivery.log(skip)
            return
        handoff = self.bridge.handoff_in_thread(event["channel"], event["thread_ts"])
        if handoff is None:
            delivery.log("ignored:not_handoff")
            return
        text = slack_blocks.inbound_text(event.get("text") or "")
        key = f"{event['channel']}:{event['ts']}"

        def relay() -> None:
            outcome = self.bridge.staff_reply(
                handoff, event["user"], text, key, has_files=bool(event.get("files"))
            )
            delivery.log(f"handoff:{outcome}")

        self._submit(relay)

    def _answer_event(
        self, delivery: _Delivery, client: WebClient, root: str | None, reply_in_thread: bool
    ) -> None:
        event = delivery.event
        skip = self._skip_reason(delivery.body, event)
        if skip is not None:
            delivery.log(skip)
            return
        channel, user, ts = event["channel"], event["user"], event["ts"]
        conversation = f"{channel}:{root}:{user}"
        thread_ts = root if reply_in_thread else None

        def answer() -> None:
            image = self._shared_image(event)
            if image is not None:
                reply = self._respond_image(conversation, image, ts)
                teach_text = None
            else:
                reply = self._respond(conversation, event.get("text") or "", ts)
                teach_text = _teach_text(reply, event.get("text") or "")
            payload = _render(reply, conversation, teach_text)
            posted = _call(client.chat_postMessage, channel=channel, thread_ts=thread_ts, **payload)
            delivery.log("answered" if posted else "post_failed", reply)

        self._submit(answer)

    def _skip_reason(self, body: dict[str, Any], event: dict[str, Any]) -> str | None:
        if event.get("bot_id") or event.get("subtype") == "bot_message":
            return "ignored:bot"
        if event.get("subtype") not in PERSON_SUBTYPES:
            return f"ignored:{event.get('subtype')}"
        if not (event.get("channel") and event.get("user") and event.get("ts")):
            return "ignored:incomplete"
        # NOTE: an event is marked as seen before the reply is posted. A crash in between
        # loses that reply, because Slack's redelivery is then dropped as a duplicate.
        event_id = body.get("event_id")
        if event_id and not self.store.first_time(f"slack:{event_id}"):
            return "duplicate"
        # app_mention and message events for one post have different event ids.
        if not self.store.first_time(f"slack:post:{event['channel']}:{event['ts']}"):
            return "duplicate"
        return None

    # -- slash command --------------------------------------------------------------------

    def on_command(
        self, ack: Callable[..., None], command: dict[str, Any], respond: Callable[..., Any]
    ) -> None:
        ack()
        channel = command.get("channel_id", "")
        user = command.get("user_id", "")
        conversation = f"{channel}:{COMMAND_ROOT}:{user}"

        def answer() -> None:
            reply = self._respond(conversation, command.get("text") or "", None)
            payload = _render(reply, conversation)
            posted = _call(respond, response_type="ephemeral", replace_original=False, **payload)
            _log_interaction(
                "command", channel, user, "answered" if posted else "post_failed", reply
            )

        self._submit(answer)

    # -- button click ---------------------------------------------------------------------

    def on_choice(
        self,
        ack: Callable[..., None],
        body: dict[str, Any],
        action: dict[str, Any],
        client: WebClient,
        respond: Callable[..., Any],
    ) -> None:
        ack()
        label = str(action.get("value") or "")
        conversation = slack_blocks.conversation_of(str(action.get("block_id") or ""))
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
        user = (body.get("user") or {}).get("id", "")
        message = body.get("message") or {}
        message_ts = container.get("message_ts") or message.get("ts")
        if not (label and conversation and channel and message_ts):
            _log_interaction("choice", channel, user, "ignored:incomplete")
            return
        # One answer per question message, so a double click does not advance twice.
        if not self.store.first_time(f"slack:choice:{channel}:{message_ts}"):
            _log_interaction("choice", channel, user, "duplicate")
            return
        chosen = slack_blocks.render_chosen(message.get("blocks"), label, user)

        def answer() -> None:
            reply = self._respond(conversation, label, None)
            payload = _render(reply, conversation)
            if container.get("is_ephemeral"):
                _call(respond, replace_original=True, **chosen)
                posted = _call(
                    respond, response_type="ephemeral", replace_original=False, **payload
                )
            else:
                _call(client.chat_update, channel=channel, ts=message_ts, **chosen)
                thread_ts = message.get("thread_ts")
                posted = _call(
                    client.chat_postMessage, channel=channel, thread_ts=thread_ts, **payload
                )
            _log_interaction(
                "choice", channel, user, "answered" if posted else "post_failed", reply
            )

        self._submit(answer)

    # -- hand-off buttons -------------------------------------------------------------------

    def on_pick(
        self,
        ack: Callable[..., None],
        body: dict[str, Any],
        action: dict[str, Any],
        client: WebClient,
        respond: Callable[..., Any],
    ) -> None:
        ack()
        user = (body.get("user") or {}).get("id", "")
        handoff_id = str(action.get("value") or "")

        def pick() -> None:
            handoff, outcome = self.bridge.pick(handoff_id, user)
            self._refresh_handoff(client, body, handoff, closed_by="")
            notice = self.bridge.notice(outcome, handoff)
            if notice is not None:
                _call(respond, response_type="ephemeral", replace_original=False, text=notice)
            _log_interaction("handoff_pick", _channel_of(body), user, outcome)

        self._submit(pick)

    def on_close(
        self,
        ack: Callable[..., None],
        body: dict[str, Any],
        action: dict[str, Any],
        client: WebClient,
        respond: Callable[..., Any],
    ) -> None:
        ack()
        user = (body.get("user") or {}).get("id", "")
        handoff_id = str(action.get("value") or "")

        def close() -> None:
            handoff, outcome = self.bridge.close_by_staff(handoff_id)
            closed_by = user if outcome == HANDOFF_CLOSED else ""
            self._refresh_handoff(client, body, handoff, closed_by=closed_by)
            notice = self.bridge.notice(outcome, handoff)
            if notice is not None:
                _call(respond, response_type="ephemeral", replace_original=False, text=notice)
            _log_interaction("handoff_close", _channel_of(body), user, outcome)

        self._submit(close)

    def _refresh_handoff(
        self, client: WebClient, body: dict[str, Any], handoff: Handoff | None, closed_by: str
    ) -> None:
        """Show a hand-off's current status on its message, built from the clicked message.

        `closed_by` is the staff member whose click closed it, or "" if it was already closed.
        """
        message = body.get("message") or {}
        message_ts = (body.get("container") or {}).get("message_ts") or message.get("ts")
        channel = _channel_of(body)
        if handoff is None or not (channel and message_ts):
            return
        if handoff.status == "closed" and closed_by:
            status = slack_blocks.status_closed(slack_blocks.STATUS_CLOSED_BY_STAFF, closed_by)
        elif handoff.status == "closed":
            status = slack_blocks.status_closed()
        elif handoff.status == "active":
            status = slack_blocks.status_active(handoff.staff or "")
        else:
            return
        payload = slack_blocks.render_handoff_status(message.get("blocks"), handoff.id, status)
        _call(client.chat_update, channel=channel, ts=message_ts, **payload)

    # -- teach-back -----------------------------------------------------------------------

    def on_teach(
        self, ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any], client: Any
    ) -> None:
        """Open the modal that registers a phrasing; views.open needs the trigger_id at once."""
        ack()
        user = (body.get("user") or {}).get("id", "")
        phrasing = slack_blocks.clean_phrasing(
            slack_blocks.teach_text_of(str(action.get("value") or "")) or ""
        )
        message = body.get("message") or {}
        container = body.get("container") or {}
        message_ts = container.get("message_ts") or message.get("ts")
        trigger_id = body.get("trigger_id")
        if not (phrasing and trigger_id):
            _log_interaction("teach", _channel_of(body), user, "ignored:incomplete")
            return
        metadata = {
            "channel": _channel_of(body),
            "thread_ts": str(message.get("thread_ts") or message_ts or ""),
        }
        view = slack_blocks.render_teach_view(
            phrasing, slack_blocks.teach_targets(self.assistant.kb), metadata
        )
        opened = _call(client.views_open, trigger_id=trigger_id, view=view)
        _log_interaction("teach", _channel_of(body), user, "opened" if opened else "open_failed")

    def on_teach_submit(
        self, ack: Callable[..., None], body: dict[str, Any], view: dict[str, Any], client: Any
    ) -> None:
        user = (body.get("user") or {}).get("id", "")
        values = (view.get("state") or {}).get("values") or {}
        text_field = values.get(slack_blocks.TEACH_TEXT_BLOCK, {})
        text = str((text_field.get(slack_blocks.TEACH_TEXT_ACTION) or {}).get("value") or "")
        target_field = values.get(slack_blocks.TEACH_TARGET_BLOCK, {})
        selected = (target_field.get(slack_blocks.TEACH_TARGET_ACTION) or {}).get("selected_option")
        target = str((selected or {}).get("value") or "")
        errors = {}
        if not text.strip():
            errors[slack_blocks.TEACH_TEXT_BLOCK] = slack_blocks.TEACH_MISSING_TEXT
        elif not slack_blocks.clean_phrasing(text):
            errors[slack_blocks.TEACH_TEXT_BLOCK] = slack_blocks.TEACH_ONLY_MASK
        if not self._known_target(target):
            errors[slack_blocks.TEACH_TARGET_BLOCK] = slack_blocks.TEACH_MISSING_TARGET
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        try:
            metadata = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            metadata = {}
        channel = str(metadata.get("channel") or "")
        thread_ts = str(metadata.get("thread_ts") or "")

        def learn() -> None:
            # Marks of deleted numbers are not part of anyone's wording.
            stored = self.assistant.learn(target, slack_blocks.clean_phrasing(text), staff=user)
            log.info("slack teach target=%s user=%s registered", target, _hash(user))
            if channel:
                payload = slack_blocks.render_teach_done(user, stored, self._target_label(target))
                _call(
                    client.chat_postMessage, channel=channel, thread_ts=thread_ts or None, **payload
                )

        self._submit(learn)

    def _known_target(self, target: str) -> bool:
        kb = self.assistant.kb
        return target in kb.causes or any(e.id == target for e in kb.errors)

    def _target_label(self, target: str) -> str:
        kb = self.assistant.kb
        error_id = kb.error_of_cause.get(target, target)
        error = kb.error(error_id)
        label = slack_blocks.error_label(error.id, error.title)
        return label if target == error_id else f"{label}の原因{target}"

    # -- photos ---------------------------------------------------------------------------

    def _shared_image(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Return the first image among the files shared with a message, if any."""
        for shared in event.get("files") or []:
            if isinstance(shared, dict) and str(shared.get("mimetype", "")).startswith("image/"):
                return shared
        return None

    def _respond_image(
        self, conversation: str, shared: dict[str, Any], ts: str | None
    ) -> Reply | None:
        url = str(shared.get("url_private_download") or shared.get("url_private") or "")
        try:
            image = self.files.fetch(url, declared_size=shared.get("size"))
        except FileRefused as refused:
            log.warning("slack file not fetched reason=%s", refused.reason)
            return Reply(user=conversation, kind="fallback", text=refused.message)
        message = Message(
            channel="slack", user=conversation, image=image, at=_time_of(ts), audience="staff"
        )
        try:
            return self.assistant.respond(message)
        except Exception:
            log.exception("slack photo reply failed user=%s", _hash(conversation))
            return None

    # -- core -----------------------------------------------------------------------------

    def _respond(self, conversation: str, slack_text: str, ts: str | None) -> Reply | None:
        message = Message(
            channel="slack",
            user=conversation,
            text=slack_blocks.inbound_text(slack_text),
            at=_time_of(ts),
            audience="staff",
        )
        try:
            return self.assistant.respond(message)
        except Exception:
            # The person gets a short apology; the details stay in the log.
            log.exception("slack reply failed user=%s", _hash(conversation))
            return None


def _render(
    reply: Reply | None, conversation: str, teach_text: str | None = None
) -> dict[str, Any]:
    if reply is None:
        return slack_blocks.render_failure()
    return slack_blocks.render(reply, conversation, teach_text)


def _teach_text(reply: Reply | None, slack_text: str) -> str | None:
    """Return the redacted question for a 「この表現を登録」 button, when the bot did not know."""
    if reply is None or reply.kind not in TEACHABLE_KINDS:
        return None
    text = slack_blocks.clean_phrasing(redact(slack_blocks.inbound_text(slack_text)).text)
    return text or None


def _channel_of(body: dict[str, Any]) -> str:
    container = body.get("container") or {}
    return str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")


# -- shared files -----------------------------------------------------------------------------


class FileRefused(Exception):
    """A shared file that was not fetched; `message` is the Japanese reply for staff."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class FileFetcher:
    """Download files shared in Slack into memory, with the bot token, from Slack hosts only.

    The token must never reach another host, so every URL (including redirect targets) is
    checked before a request is made, and redirects are followed by hand. The body is read
    in chunks and the download stops as soon as it passes MAX_IMAGE_BYTES.
    """

    def __init__(self, token: str, api_url: str) -> None:
        self._token = token
        api = urlsplit(api_url)
        self._allowed = {("https", SLACK_FILE_HOST, 443), (api.scheme, api.hostname, _port(api))}

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        try:
            origin = (parts.scheme, parts.hostname, _port(parts))
        except ValueError:
            return False
        return origin in self._allowed

    def fetch(self, url: str, declared_size: object = None) -> bytes:
        if isinstance(declared_size, int) and declared_size > MAX_IMAGE_BYTES:
            raise FileRefused("too_large", messages.IMAGE_REJECTED["too_large"])
        headers = {"Authorization": f"Bearer {self._token}"}
        with httpx.Client(follow_redirects=False, timeout=FILE_TIMEOUT) as client:
            for _ in range(MAX_FILE_REDIRECTS + 1):
                if not self.allowed(url):
                    raise FileRefused("host_not_allowed", FILE_REFUSED)
                try:
                    with client.stream("GET", url, headers=headers) as response:
                        if response.is_redirect:
                            url = urljoin(url, response.headers.get("location", ""))
                            continue
                        if response.status_code != 200:
                            raise FileRefused(f"status {response.status_code}", FILE_FAILED)
                        return _read_capped(response)
                except httpx.HTTPError as error:
                    raise FileRefused(type(error).__name__, FILE_FAILED) from None
        raise FileRefused("too_many_redirects", FILE_FAILED)


def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
        raise FileRefused("too_large", messages.IMAGE_REJECTED["too_large"])
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > MAX_IMAGE_BYTES:
            raise FileRefused("too_large", messages.IMAGE_REJECTED["too_large"])
    return bytes(data)


def _port(parts: Any) -> int | None:
    if parts.port is not None:
        return int(parts.port)
    return {"https": 443, "http": 80}.get(parts.scheme)


def _call(method: Callable[..., Any], **kwargs: Any) -> bool:
    """Call a Web API method or response_url; log and swallow Slack errors."""
    try:
        result = method(**kwargs)
    except SlackApiError as exc:
        log.error("slack api call failed error=%s", exc.response.get("error"))
        return False
    except OSError as exc:
        log.error("slack api call failed: %s", type(exc).__name__)
        return False
    # response_url posts return a WebhookResponse instead of raising on HTTP errors.
    status = getattr(result, "status_code", 200)
    if status >= 400:
        log.error("slack response_url post failed status=%s", status)
        return False
    return True


@dataclass
class _Delivery:
    """One event delivery, for the single INFO line logged per event (never its text)."""

    kind: str
    body: dict[str, Any]
    event: dict[str, Any]
    retry: str | None

    def log(self, outcome: str, reply: Reply | None = None) -> None:
        user = str(self.event.get("user") or self.event.get("bot_id") or "")
        log.info(
            "slack event type=%s id=%s retry=%s channel=%s user=%s outcome=%s kind=%s "
            "error=%s cause=%s",
            self.kind,
            self.body.get("event_id"),
            self.retry or 0,
            self.event.get("channel"),
            _hash(user),
            outcome,
            reply.kind if reply else "-",
            reply.error_id if reply else None,
            reply.cause_id if reply else None,
        )


def _log_interaction(
    kind: str, channel: str, user: str, outcome: str, reply: Reply | None = None
) -> None:
    log.info(
        "slack %s channel=%s user=%s outcome=%s kind=%s error=%s cause=%s",
        kind,
        channel,
        _hash(user),
        outcome,
        reply.kind if reply else "-",
        reply.error_id if reply else None,
        reply.cause_id if reply else None,
    )


def _retry_num(request: BoltRequest) -> str | None:
    values = request.headers.get("x-slack-retry-num") or [None]
    return values[0]


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12] if value else "-"


def _time_of(ts: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC) if ts else None
    except ValueError:
        return None


def _knowledge_digest(assistant: Assistant) -> str:
    """Hash the knowledge YAML files, so each connection's log shows which version it runs."""
    digest = hashlib.sha256()
    for path in sorted(assistant.kb.directory.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def post_report(settings: Settings, text: str) -> None:
    """Post the usage report to the staff channel (used by `madoguchi report --slack`)."""
    assert settings.slack_bot_token is not None
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    client.chat_postMessage(
        channel=settings.slack_staff_channel, text=slack_blocks.escape(text), unfurl_links=False
    )

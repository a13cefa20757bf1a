"""Slack channel for city staff: Events API over HTTP, or Socket Mode, through slack-bolt.

Slack retries a request that is not acknowledged within 3 seconds, so nothing slow runs
before the acknowledgement. Bolt acknowledges events itself, and the command and button
listeners call ack() first (process_before_response stays False). The core then runs on a
separate worker pool. Slack may still deliver one event more than once, so each event id
is answered once, whatever the transport or the retry headers say.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from starlette.concurrency import run_in_threadpool

from adapters import slack_blocks
from bot.assistant import Assistant
from bot.models import Message, Reply
from bot.settings import Settings
from bot.store import Store

log = logging.getLogger(__name__)

COMMAND = "/madoguchi"
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


def create_router(settings: Settings, assistant: Assistant, store: Store) -> APIRouter:
    """Build the router for POST /slack/events (events, the slash command and button clicks)."""
    app = build_app(settings, assistant, store)
    router = APIRouter()

    @router.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        # App.dispatch blocks until the listener calls ack(), so it runs off the event loop.
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    return router


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
    settings: Settings, assistant: Assistant, store: Store, ping_interval: float = 10.0
) -> SocketMode:
    """Open a Socket Mode connection in background threads and return it; close() stops it.

    The WebSocket URL comes from apps.connections.open on MADOGUCHI_SLACK_API_URL, which
    raises SlackApiError here when the token is rejected. A failed WebSocket handshake is
    only logged: the client retries, checking the connection every `ping_interval` seconds,
    and also reconnects by itself whenever the connection drops later.
    """
    if settings.slack_app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN (an app-level token, xapp-…)")
    app = build_app(settings, assistant, store, socket_mode=True)
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
    settings: Settings, assistant: Assistant, store: Store, socket_mode: bool = False
) -> App:
    """Build the Bolt app. It calls auth.test once, so the Web API must be reachable.

    Over HTTP every request must carry a valid signature; Socket Mode requests arrive over
    the app's own authenticated WebSocket and carry none.
    """
    if settings.slack_bot_token is None:
        raise ValueError("the Slack channel needs SLACK_BOT_TOKEN (a bot token, xoxb-…)")
    secret = settings.slack_signing_secret
    if not socket_mode and secret is None:
        raise ValueError("Slack over HTTP needs SLACK_SIGNING_SECRET to verify requests")
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
    )
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    app = App(
        client=client,
        # Bolt's own verifier (slack-bolt 1.30) logs the raw request body at INFO on failure,
        # so a quieter middleware with the same checks takes its place.
        request_verification_enabled=False,
        before_authorize=None if secret is None else _signature_check(secret.get_secret_value()),
        process_before_response=False,
    )
    staff = _StaffChannel(assistant, store)
    app.event("app_mention")(staff.on_mention)
    app.event("message")(staff.on_message)
    app.command(COMMAND)(staff.on_command)
    app.action(CHOICE_ACTION)(staff.on_choice)
    return app


def _signature_check(signing_secret: str) -> Callable[..., BoltResponse]:
    """Build a middleware that rejects HTTP requests with a bad signature or a stale timestamp.

    SignatureVerifier checks the v0 HMAC-SHA256 of `v0:timestamp:body` and rejects
    timestamps more than 5 minutes from now. Socket Mode requests carry no signature.
    """
    verifier = SignatureVerifier(signing_secret)

    def check_signature(
        req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        if req.mode == "socket_mode":
            return next()
        timestamp = req.headers.get("x-slack-request-timestamp", ["0"])[0]
        signature = req.headers.get("x-slack-signature", [""])[0]
        if verifier.is_valid(req.raw_body, timestamp, signature):
            return next()
        log.info("slack request rejected: invalid signature or stale timestamp=%s", timestamp)
        return BoltResponse(status=401, body={"error": "invalid request"})

    return check_signature


class _StaffChannel:
    """Bolt listeners: convert Slack payloads to core messages and replies to Block Kit.

    Listeners run on Bolt's listener thread pool (5 threads in slack-bolt 1.30), which also
    runs the ack() of commands and clicks. So the listeners only acknowledge and check for
    duplicates, and they hand the core call and the Web API calls to a pool of their own.
    """

    def __init__(self, assistant: Assistant, store: Store) -> None:
        self.assistant = assistant
        self.store = store
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
        root = event.get("thread_ts") or event.get("ts")
        self._answer_event(delivery, client, root, reply_in_thread=True)

    def on_message(
        self, body: dict[str, Any], event: dict[str, Any], client: WebClient, request: BoltRequest
    ) -> None:
        delivery = _Delivery("message", body, event, _retry_num(request))
        # In channels a question reaches the bot as app_mention. The same post may also
        # arrive as a channel message event, which is dropped so that it is answered once.
        if event.get("channel_type") != "im":
            delivery.log("ignored:not_dm")
            return
        thread = event.get("thread_ts")
        self._answer_event(delivery, client, thread or DM_ROOT, bool(thread))

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
            reply = self._respond(conversation, event.get("text") or "", ts)
            payload = _render(reply, conversation)
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


def _render(reply: Reply | None, conversation: str) -> dict[str, Any]:
    if reply is None:
        return slack_blocks.render_failure()
    return slack_blocks.render(reply, conversation)


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

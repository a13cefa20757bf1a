"""Hand-offs between residents on LINE and city staff on Slack.

The core decides when a conversation is handed to staff and keeps the hand-off in the store;
this module carries the words across. Opening a hand-off posts one message to the staff
channel, and its thread becomes the conversation. The resident's messages are posted in the
thread, staff replies in the thread are pushed to the resident on LINE, and the 「対応する」
and 「対応終了」 buttons change the hand-off's status. When no staff member takes a hand-off
in time, a background task pushes the office's contact details to the resident. The post's
status line and buttons are updated on every status change, from either side.

Every hand-off lives in the store (SQLite or Redis), so an open one keeps working after a
restart. Without a staff channel the resident still gets the notice and, later, the timeout
message. Without LINE credentials nothing is pushed, and staff are told so in the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from adapters import line, slack_blocks
from bot import messages
from bot.assistant import CONSIDER, Assistant
from bot.desk import TRANSCRIPT_TURNS, TRANSCRIPT_WINDOW, user_hash
from bot.models import Message, Reply
from bot.normalize import compact
from bot.phrases import Text
from bot.settings import Settings
from bot.store import Handoff, Store

log = logging.getLogger(__name__)

# The timeout check runs this often: a fifth of the timeout, kept between these bounds.
MIN_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 30.0
MAX_CANDIDATES = 3
# A staff reply starting with this stays in the Slack thread (a note to colleagues).
INTERNAL_PREFIXES = ("//", "／／")
CHANNEL_LABELS = {"line": "LINE", "web": "Web", "slack": "Slack", "cli": "CLI"}

# Notices posted to staff in the hand-off thread.
RELAY = "住民：{text}"
RESIDENT_PHOTO = "住民が写真を送りました（写真は転送しません）。文字で送るよう案内しました。"
RESIDENT_CLOSED = "住民が相談を終了しました。以降は madoguchi が自動で答えます。"
RESIDENT_BLOCKED = "住民が LINE でこのアカウントをブロックしたため、相談を終了しました。"
STAFF_CLOSED = "対応を終了しました。住民に終了を伝え、以降は madoguchi が自動で答えます。"
TIMED_OUT = (
    "{minutes:g} 分たっても対応する人がいなかったため、住民に窓口の問い合わせ先を"
    "案内しました。このスレッドでの返信は、引き続き住民に届きます。"
)
NOT_SENT_CLOSED = "この相談は終了しているため、返信は住民に届いていません。"
NOT_SENT_NO_LINE = "LINE がつながっていないため、返信は住民に届いていません。"
NOT_SENT_FAILED = (
    "返信を住民の LINE に届けられませんでした。少し時間をおいて、もう一度書き込んでください。"
)
NOT_SENT_FILES = "写真やファイルは住民に送れません。文字で書いてください。"
SENT_SHORTENED = (
    "返信が長すぎるため、LINE のメッセージ {count} 通に収まる先頭の約 {sent:,} 文字だけを"
    "住民に送りました（返信は全部で {total:,} 文字）。続きは、分けて書き込んでください。"
)
ALREADY_PICKED = "この相談は、すでに <@{user}> さんが対応しています。"
ALREADY_CLOSED = "この相談は、すでに終了しています。"
UNKNOWN_HANDOFF = "この相談は見つかりませんでした。"

# Outcomes of a 「対応する」 or 「対応終了」 click, logged as they are.
PICKED = "picked"
CLOSED = "closed"
ALREADY_PICKED_BY_OTHER = "already_picked"
ALREADY_ENDED = "already_closed"
NOT_FOUND = "not_found"


class Bridge:
    """Carry hand-off messages between LINE and the staff channel, and watch for timeouts."""

    def __init__(self, settings: Settings, assistant: Assistant, store: Store) -> None:
        self.assistant = assistant
        self.store = store
        self.timeout_seconds = settings.handoff_timeout_minutes * 60
        self.poll_seconds = min(MAX_POLL_SECONDS, max(MIN_POLL_SECONDS, self.timeout_seconds / 5))
        self.staff_channel = settings.slack_staff_channel
        self.slack: WebClient | None = None
        if settings.slack_bot_token is not None and self.staff_channel:
            self.slack = WebClient(
                token=settings.slack_bot_token.get_secret_value(),
                base_url=settings.slack_api_url,
                timeout=10,
            )
            self.slack.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
        self.line: line.Sender | None = None
        if settings.line_channel_access_token is not None:
            self.line = line.Sender(settings)
            if self.slack is None:
                log.info(
                    "LINE hand-offs are not posted to Slack: set SLACK_BOT_TOKEN and "
                    "MADOGUCHI_SLACK_STAFF_CHANNEL"
                )
        self._choice_labels = self._labels()

    def close(self) -> None:
        if self.line is not None:
            self.line.close()

    # -- from the resident -----------------------------------------------------------------

    def open(self, reply: Reply, message: Message) -> str:
        """Post a newly opened hand-off to the staff channel; return the outcome for the log."""
        assert reply.handoff_id is not None
        handoff = self.store.handoff(reply.handoff_id)
        if handoff is None:
            return "handoff missing"
        if handoff.thread_ts:
            return "handoff already posted"
        if self.slack is None:
            log.info("handoff=%s not posted: no staff channel configured", _short(handoff.id))
            return "handoff not posted: staff channel off"
        texts = self._resident_texts(handoff)
        payload = slack_blocks.render_handoff(
            handoff.id,
            CHANNEL_LABELS.get(message.channel, message.channel),
            reply.transcript,
            self._candidates(texts),
            self._last_answer(handoff),
            self._phrasing(texts),
            messages.STAFF_PREFIX,
        )
        result = self._post(channel=self.staff_channel, unfurl_links=False, **payload)
        if result is None:
            return "handoff post failed"
        # The response names the channel by id, which is what thread events carry later.
        self.store.set_handoff_thread(handoff.id, str(result["channel"]), str(result["ts"]))
        log.info("handoff=%s posted to the staff channel", _short(handoff.id))
        return "handoff posted"

    def relay(self, reply: Reply) -> str:
        """Post a resident's message (already redacted by the core) in the hand-off thread."""
        handoff = self.store.handoff(reply.handoff_id or "")
        text = reply.relay_text.strip()
        if handoff is None or not text:
            return "ignored: nothing to relay"
        return self._post_in_thread(handoff, RELAY.format(text=text))

    def resident_photo(self, handoff: Handoff) -> str:
        return self._post_in_thread(handoff, RESIDENT_PHOTO)

    def resident_blocked(self, handoff: Handoff) -> None:
        self._post_in_thread(handoff, RESIDENT_BLOCKED)
        self.show_status(handoff, slack_blocks.status_closed(slack_blocks.STATUS_CLOSED_BLOCKED))

    def resident_closed(self, handoff_id: str) -> None:
        handoff = self.store.handoff(handoff_id)
        if handoff is not None:
            self._post_in_thread(handoff, RESIDENT_CLOSED)
            status = slack_blocks.status_closed(slack_blocks.STATUS_CLOSED_BY_RESIDENT)
            self.show_status(handoff, status)

    # -- from staff ------------------------------------------------------------------------

    def handoff_in_thread(self, channel: str, thread_ts: str | None) -> Handoff | None:
        if not thread_ts:
            return None
        return self.store.handoff_by_thread(channel, thread_ts)

    def staff_reply(
        self, handoff: Handoff, staff: str, text: str, message_key: str, has_files: bool = False
    ) -> str:
        """Push a staff reply from the thread to the resident, marked as coming from staff.

        `message_key` identifies the Slack message; the LINE retry key is derived from it, so
        a redelivered event cannot push the same reply twice. Problems are posted in the thread.
        """
        if text.startswith(INTERNAL_PREFIXES):
            return "internal note"
        current = self.store.handoff(handoff.id) or handoff
        if current.status == "closed":
            self._post_in_thread(current, NOT_SENT_CLOSED)
            return "not sent: handoff closed"
        if not text.strip():
            if has_files:
                self._post_in_thread(current, NOT_SENT_FILES)
            return "not sent: no text"
        if self.line is None or current.channel != "line":
            self._post_in_thread(current, NOT_SENT_NO_LINE)
            return "not sent: LINE off"
        # A staff member who replies has taken the hand-off, so no timeout message follows.
        picked = self.store.pick_handoff(current.id, staff)
        retry_key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"slack-message:{message_key}"))
        reply = f"{messages.STAFF_PREFIX}{text.strip()}"
        outcome = self._push(current, reply, retry_key)
        if picked:
            # The post stops offering 「対応する」 once the resident has the reply.
            log.info("handoff=%s picked by a reply", _short(current.id))
            self.show_status(current, slack_blocks.status_active(staff))
        if outcome != "pushed":
            self._post_in_thread(current, NOT_SENT_FAILED)
            return outcome
        if line.overflows(reply):
            self._post_in_thread(current, _shortened_notice(reply, len(text.strip())))
            outcome = "pushed shortened"
        if has_files:
            self._post_in_thread(current, NOT_SENT_FILES)
        return outcome

    def pick(self, handoff_id: str, staff: str) -> tuple[Handoff | None, str]:
        """Let a staff member take a hand-off; return it and the outcome (PICKED if taken)."""
        picked = self.store.pick_handoff(handoff_id, staff)
        handoff = self.store.handoff(handoff_id)
        if handoff is None:
            return None, NOT_FOUND
        if picked:
            log.info("handoff=%s picked", _short(handoff_id))
            return handoff, PICKED
        if handoff.status == "closed":
            return handoff, ALREADY_ENDED
        return handoff, ALREADY_PICKED_BY_OTHER

    def close_by_staff(self, handoff_id: str) -> tuple[Handoff | None, str]:
        """Close a hand-off from Slack, tell the resident, and return it and the outcome."""
        closed = self.store.close_handoff(handoff_id)
        handoff = self.store.handoff(handoff_id)
        if handoff is None:
            return None, NOT_FOUND
        if not closed:
            return handoff, ALREADY_ENDED
        log.info("handoff=%s closed by staff", _short(handoff_id))
        if handoff.channel == "line" and self.line is not None:
            self._push(handoff, messages.HANDOFF_ENDED, str(uuid.uuid4()))
        self._post_in_thread(handoff, STAFF_CLOSED)
        return handoff, CLOSED

    @staticmethod
    def notice(outcome: str, handoff: Handoff | None) -> str | None:
        """Return the Japanese notice for the staff member whose click did nothing, if any."""
        if outcome == NOT_FOUND:
            return UNKNOWN_HANDOFF
        if outcome == ALREADY_ENDED:
            return ALREADY_CLOSED
        if outcome == ALREADY_PICKED_BY_OTHER and handoff is not None:
            return ALREADY_PICKED.format(user=handoff.staff or "")
        return None

    # -- timeouts --------------------------------------------------------------------------

    def check_timeouts(self) -> int:
        """Push the office's contact details for hand-offs no one took in time; return the count.

        Each hand-off is marked before the push, so a failed push is not repeated. Staff never
        see a hand-off without a thread, so such a hand-off is closed and the bot takes over.
        """
        cutoff = time.time() - self.timeout_seconds
        count = 0
        for handoff in self.store.unanswered_handoffs(cutoff):
            # Only the worker that marks it first tells the resident.
            if not self.store.mark_timeout_notified(handoff.id):
                continue
            count += 1
            text = messages.handoff_timeout(self.assistant.kb.municipality)
            outcome = "not pushed"
            if handoff.channel == "line" and self.line is not None:
                outcome = self._push(handoff, text, str(uuid.uuid4()))
            if handoff.thread_ts:
                minutes = self.timeout_seconds / 60
                self._post_in_thread(handoff, TIMED_OUT.format(minutes=minutes))
                self.show_status(handoff, slack_blocks.status_timed_out(minutes))
            else:
                self.store.close_handoff(handoff.id)
            log.info("handoff=%s timed out, resident %s", _short(handoff.id), outcome)
        return count

    async def watch(self) -> None:
        """Run check_timeouts every poll_seconds until cancelled."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await asyncio.to_thread(self.check_timeouts)
            except Exception:
                log.exception("handoff timeout check failed")

    # -- helpers ---------------------------------------------------------------------------

    def _push(self, handoff: Handoff, text: str, retry_key: str) -> str:
        assert self.line is not None
        target = line.push_target(handoff.user)
        if target is None:
            log.warning("handoff=%s has no LINE push target", _short(handoff.id))
            return "failed: no push target"
        outcome = self.line.push(target, line.text_messages(text), retry_key)
        log.info("handoff=%s push outcome=%s", _short(handoff.id), outcome)
        return outcome

    def show_status(self, handoff: Handoff, status: slack_blocks.HandoffStatus) -> bool:
        """Update the hand-off post in the staff channel to show `status`.

        The post is rebuilt from its own blocks, so it is read back with conversations.history
        first. That needs the channel's history scope, which thread replies need too.
        """
        if self.slack is None or not (handoff.thread_channel and handoff.thread_ts):
            return False
        blocks = self._posted_blocks(handoff.thread_channel, handoff.thread_ts)
        if blocks is None:
            log.warning("handoff=%s post not updated: post not readable", _short(handoff.id))
            return False
        payload = slack_blocks.render_handoff_status(blocks, handoff.id, status)
        updated = self._call(
            "chat_update", channel=handoff.thread_channel, ts=handoff.thread_ts, **payload
        )
        return updated is not None

    def _posted_blocks(self, channel: str, ts: str) -> list[dict[str, Any]] | None:
        history = self._call(
            "conversations_history", channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1
        )
        for message in (history or {}).get("messages") or []:
            if isinstance(message, dict) and message.get("ts") == ts:
                blocks = message.get("blocks")
                return blocks if isinstance(blocks, list) and blocks else None
        return None

    def _post_in_thread(self, handoff: Handoff, text: str) -> str:
        if self.slack is None or not (handoff.thread_channel and handoff.thread_ts):
            return "not posted: no staff thread"
        result = self._post(
            channel=handoff.thread_channel,
            thread_ts=handoff.thread_ts,
            unfurl_links=False,
            **slack_blocks.render_notice(text),
        )
        return "relayed to staff" if result is not None else "failed: staff thread post"

    def _post(self, **kwargs: Any) -> dict[str, Any] | None:
        return self._call("chat_postMessage", **kwargs)

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """Call a Web API method of the staff channel; log and swallow its errors."""
        assert self.slack is not None
        try:
            response = getattr(self.slack, method)(**kwargs)
        except SlackApiError as exc:
            log.error("staff channel %s failed error=%s", method, exc.response.get("error"))
            return None
        except OSError as exc:
            log.error("staff channel %s failed: %s", method, type(exc).__name__)
            return None
        return response.data if isinstance(response.data, dict) else None

    def _resident_texts(self, handoff: Handoff) -> list[str]:
        """Return what the resident wrote before asking for staff (redacted), oldest first."""
        since = handoff.created_at - TRANSCRIPT_WINDOW
        hashed = user_hash(handoff.channel, handoff.user)
        turns = self.store.recent_turns(hashed, since, TRANSCRIPT_TURNS + 1)
        return [
            turn["text"].strip()
            for turn in turns
            if turn["text"].strip() and turn["kind"] not in ("handoff", "notice")
        ]

    def _phrasing(self, texts: list[str]) -> str | None:
        """Pick the resident's own words worth registering: the first text that is no button.

        Deleted numbers leave marks that would only get in the way of matching, so they are
        removed, and a text that was nothing but numbers is skipped.
        """
        for text in texts:
            phrasing = slack_blocks.clean_phrasing(text)
            if phrasing and compact(text) not in self._choice_labels:
                return phrasing
        return None

    def _candidates(self, texts: list[str]) -> list[str]:
        words = [t for t in texts if compact(t) not in self._choice_labels]
        if not words:
            return []
        ranked = self.assistant.matcher.rank(Text.of("\n".join(words)))
        kb = self.assistant.kb
        found = [s for s in ranked if s.kind == "error" and s.score >= CONSIDER]
        return [
            f"{slack_blocks.error_label(s.entry_id, kb.error(s.entry_id).title)}"
            f"（一致度 {s.score:.2f}）"
            for s in found[:MAX_CANDIDATES]
        ]

    def _last_answer(self, handoff: Handoff) -> str | None:
        hashed = user_hash(handoff.channel, handoff.user)
        turns = self.store.recent_turns(hashed, handoff.created_at - TRANSCRIPT_WINDOW)
        kb = self.assistant.kb
        for turn in reversed(turns):
            cause_id = turn["cause_id"]
            if turn["kind"] == "answer" and cause_id in kb.causes:
                error = kb.error(turn["error_id"])
                summary = kb.causes[cause_id].summary
                return (
                    f"{slack_blocks.error_label(error.id, error.title)}・原因{cause_id}: {summary}"
                )
        return None

    def _labels(self) -> set[str]:
        """Collect every button label the bot offers, in compact form."""
        kb = self.assistant.kb
        labels = {
            messages.NONE_OF_THESE,
            messages.RESET_LABEL,
            messages.HANDOFF_LABEL,
            messages.RESOLVED,
            messages.NOT_RESOLVED,
        }
        for fact in kb.facts.values():
            labels.update(choice.label for choice in fact.choices)
        for error in kb.errors:
            # Clarifying questions offer kiosk messages by title, cut to 20 characters.
            labels.add(error.title)
            labels.add(error.title if len(error.title) <= 20 else error.title[:19] + "…")
        return {compact(label) for label in labels}


def _short(handoff_id: str) -> str:
    return handoff_id[:8]


def _shortened_notice(reply: str, total: int) -> str:
    """Tell staff how much of an over-long reply reached the resident."""
    parts = line.split_text(reply)
    sent = sum(len(part) for part in parts) - len(line.ELLIPSIS) - len(messages.STAFF_PREFIX)
    return SENT_SHORTENED.format(count=len(parts), sent=max(sent, 0), total=total)

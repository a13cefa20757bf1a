"""Hand-offs to city staff and feedback on answers: the moves around the diagnosis itself.

While a hand-off is open the bot stays quiet and the adapter relays the person's (redacted)
messages to the staff thread; 「終了」 hands the conversation back to the bot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from bot import messages
from bot.knowledge import KnowledgeBase
from bot.models import Message, Reply
from bot.phrases import Text, phrases
from bot.store import Store

# How far back the hand-off transcript reaches, in seconds.
TRANSCRIPT_WINDOW = 24 * 3600
TRANSCRIPT_TURNS = 10
# Fallbacks in a row after which the bot offers a person.
FALLBACKS_BEFORE_OFFER = 2


def user_hash(channel: str, user: str) -> str:
    """Return the pseudonymous id that logs and reports use instead of the platform user id."""
    return hashlib.sha256(f"{channel}:{user}".encode()).hexdigest()[:12]


class Desk:
    def __init__(
        self,
        kb: KnowledgeBase,
        store: Store,
        clock: Callable[[], float],
        handoff_channels: frozenset[str],
    ) -> None:
        self.kb = kb
        self.store = store
        self.clock = clock
        # Channels whose residents staff can answer (the LINE ⇄ Slack bridge); elsewhere a
        # request for a person gets the office's contact details instead.
        self.handoff_channels = handoff_channels
        self._handoff = phrases((*kb.intents.handoff, messages.HANDOFF_LABEL))
        self._end = {Text.of(word).compact for word in messages.END_HANDOFF_WORDS}
        self._resolved = Text.of(messages.RESOLVED).compact
        self._feedback_labels = {self._resolved, Text.of(messages.NOT_RESOLVED).compact}

    # -- before the diagnosis ------------------------------------------------------------------

    def intercept(self, message: Message, text: str, query: Text, state: Any) -> Reply | None:
        """Answer moves that are not about a kiosk message; None lets the diagnosis run."""
        key = f"{message.channel}:{message.user}"
        handoff = self.store.handoff_for(key)
        if handoff is not None:
            if query.compact in self._end:
                self.store.close_handoff(handoff.id)
                return Reply(
                    user=message.user,
                    kind="notice",
                    text=messages.HANDOFF_ENDED,
                    closed_handoff_id=handoff.id,
                )
            return Reply(
                user=message.user,
                kind="handoff",
                text="",
                handoff_id=handoff.id,
                relay=True,
                relay_text=text,
            )
        if message.audience == "resident" and any(p.found_in(query) for p in self._handoff):
            return self.open(message, state)
        if state.feedback_for is not None:
            return self._feedback(message, query, state)
        if query.compact in self._feedback_labels:
            # A second tap on an old 解決した/解決しない button: nothing to record again.
            return self._after_feedback(message, query.compact == self._resolved)
        return None

    def open(self, message: Message, state: Any) -> Reply:
        """Pass the conversation to staff and tell the person what happens next."""
        if message.channel not in self.handoff_channels:
            return Reply(
                user=message.user,
                kind="notice",
                text=messages.NO_HANDOFF.format(contact=messages.contact(self.kb.municipality)),
            )
        key = f"{message.channel}:{message.user}"
        handoff = self.store.open_handoff(key, message.channel, message.user)
        since = self.clock() - TRANSCRIPT_WINDOW
        hashed = user_hash(message.channel, message.user)
        turns = self.store.recent_turns(hashed, since, TRANSCRIPT_TURNS)
        transcript = []
        for turn in turns:
            if turn["text"]:
                transcript.append(f"住民: {turn['text']}")
            if turn.get("reply"):
                transcript.append(f"ボット: {turn['reply']}")
        state.restart()
        city = self.kb.municipality
        return Reply(
            user=message.user,
            kind="handoff",
            text=messages.handoff_opened(city),
            handoff_id=handoff.id,
            transcript=transcript,
        )

    def _feedback(self, message: Message, query: Text, state: Any) -> Reply | None:
        target = state.feedback_for
        state.feedback_for = None
        if query.compact not in self._feedback_labels:
            return None
        resolved = query.compact == self._resolved
        self.store.add_feedback(
            {
                "at": self.clock(),
                "channel": message.channel,
                "user_hash": user_hash(message.channel, message.user),
                "error_id": target.get("error_id"),
                "cause_id": target.get("cause_id"),
                "resolved": int(resolved),
            }
        )
        return self._after_feedback(message, resolved)

    @staticmethod
    def _after_feedback(message: Message, resolved: bool) -> Reply:
        if resolved:
            return Reply(user=message.user, kind="notice", text=messages.RESOLVED_REPLY)
        return Reply(
            user=message.user,
            kind="notice",
            text=messages.NOT_RESOLVED_REPLY,
            choices=[messages.HANDOFF_LABEL, messages.RESET_LABEL],
        )

    # -- after the diagnosis --------------------------------------------------------------------

    def decorate(self, message: Message, reply: Reply, state: Any) -> None:
        """Offer feedback buttons after a resident's answer, and a person after fallbacks."""
        if message.audience != "resident":
            return
        if reply.kind == "answer" and not reply.choices:
            reply.choices = [messages.RESOLVED, messages.NOT_RESOLVED]
            state.feedback_for = {"error_id": reply.error_id, "cause_id": reply.cause_id}
        if reply.kind == "fallback":
            state.fallbacks += 1
            if (
                state.fallbacks >= FALLBACKS_BEFORE_OFFER
                and messages.HANDOFF_LABEL not in reply.choices
            ):
                reply.text = f"{reply.text}\n{messages.OFFER_HANDOFF}"
                reply.choices = [*reply.choices, messages.HANDOFF_LABEL]
        elif reply.kind not in ("notice",):
            state.fallbacks = 0

"""The channel-independent core: one message in, one reply out, conversation state in a store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bot import messages, ocr, screen
from bot.desk import Desk, user_hash
from bot.diagnosis import (
    UNKNOWN,
    FactReader,
    Open,
    best_question,
    open_causes,
    shared_facts,
)
from bot.knowledge import KioskError, KnowledgeBase
from bot.match import Matcher, Score
from bot.models import Candidate, Message, Reply
from bot.normalize import compact, normalize
from bot.phrases import REGEX_PREFIX, Text, phrases
from bot.privacy import redact
from bot.store import MemoryStore, Store

log = logging.getLogger(__name__)

# Maximum number of characters the matcher reads; a kiosk question never needs more.
MAX_QUERY_CHARS = 2000
MAX_QUESTIONS = 2
MAX_CLARIFY = 3

# Score thresholds, tuned on labelled queries (see tests/test_accuracy.py).
IDENTIFY = 0.55
MARGIN = 0.12
CONSIDER = 0.35
# Messages within SPREAD of the best one (and above CONSIDER_RIVAL) stay in the running.
SPREAD = 0.25
CONSIDER_RIVAL = 0.25
TOPIC = 0.5
# A query that aligns this well with a screen text quotes it: the strongest evidence there is.
QUOTED = 0.75
# A keyword whose reading has at least this many kana is specific to the kiosk.
SPECIFIC_READING = 7
# The compact form of the 「どれでもない」 choice, compared with what the person sends.
NONE_OF_THESE = compact(messages.NONE_OF_THESE)
# Kiosk service hours are local time in Japan.
JAPAN = timezone(timedelta(hours=9), "JST")
# A cause this much heavier than all the others together is taken as the answer.
DOMINANT = 0.85


@dataclass
class State:
    """Conversation memory kept between messages: candidates, known facts, pending question."""

    errors: dict[str, float] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    pending_fact: str | None = None
    clarify: dict[str, str] = field(default_factory=dict)
    questions: int = 0
    fallbacks: int = 0
    warned: bool = False
    # The answer whose 「解決した」/「解決しない」 buttons are showing.
    feedback_for: dict[str, Any] | None = None
    # Who is talking: staff get the staff wording of questions ("…を確認してください").
    audience: str = "resident"
    # The last reply listed several causes; a fact given afterwards may still settle it.
    unsure: bool = False
    updated: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def restart(self) -> None:
        """Forget the diagnosis, keeping the privacy warning flag, fallback count and audience."""
        kept = {"warned": self.warned, "fallbacks": self.fallbacks, "audience": self.audience}
        self.__dict__.update(State().__dict__)
        self.__dict__.update(kept)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> State:
        if not data:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Assistant:
    def __init__(
        self,
        kb: KnowledgeBase,
        store: Store | None = None,
        timeout_minutes: float = 30,
        clock: Callable[[], float] = time.time,
        handoff_channels: frozenset[str] = frozenset({"line"}),
    ) -> None:
        self.kb = kb
        self.clock = clock
        self.store: Store = store if store is not None else MemoryStore()
        self.timeout_seconds = timeout_minutes * 60
        self.matcher = Matcher(kb)
        self.reader = FactReader(kb)
        self.desk = Desk(kb, self.store, clock, handoff_channels)
        for learned in self.store.learned():
            self._apply_learned(learned.target, learned.text)
        intents = kb.intents
        self._greeting = phrases(intents.greeting)
        self._thanks = phrases(intents.thanks)
        self._reset = phrases(intents.reset)
        self._vague = phrases(intents.vague_error)
        self._yes = phrases(intents.yes)
        self._no = phrases(intents.no)
        self._unknown = phrases(intents.unknown)
        self._domain = phrases(intents.domain)

    # -- entry point ---------------------------------------------------------------------

    def respond(self, message: Message) -> Reply:
        started = time.perf_counter()
        key = f"{message.channel}:{message.user}"
        now = message.at.timestamp() if message.at is not None else self.clock()
        state, expired = self._load(key, now)
        state.audience = message.audience
        if message.image is not None:
            reply, text = self._respond_image(message, state)
            guarded = redact(text)
        else:
            guarded = redact(_clean(message.text))
            # A kiosk question never needs more than MAX_QUERY_CHARS; the rest is not read.
            text = guarded.text[:MAX_QUERY_CHARS]
            query = Text.of(text)
            intercepted = self.desk.intercept(message, text, query, state)
            reply = intercepted or self._respond(message, query, state)
        self.desk.decorate(message, reply, state)
        self._add_time_note(message, reply)
        if expired and reply.kind != "answer":
            reply.text = f"{messages.EXPIRED}\n{reply.text}"
        if guarded.redacted:
            reply.redacted = True
            if not state.warned:
                reply.text = f"{messages.REDACTED}\n\n{reply.text}"
                state.warned = True
        state.updated = now
        self.store.save(key, state.as_json())
        self._log(message, guarded.text, reply, started)
        return reply

    def reset(self, channel: str, user: str) -> None:
        self.store.delete(f"{channel}:{user}")

    def learn(self, target: str, text: str, staff: str | None = None) -> str:
        """Register a resident's phrasing for a kiosk message or cause; the matcher uses it at
        once. The text is redacted first; the stored, redacted text is returned."""
        if target not in self.kb.causes and not any(e.id == target for e in self.kb.errors):
            raise KeyError(target)
        text = redact(_clean(text)).text
        self.store.add_learned(target, text, staff)
        self._apply_learned(target, text)
        return text

    def _apply_learned(self, target: str, text: str) -> None:
        error_id = self.kb.error_of_cause.get(target, target)
        if not any(e.id == error_id for e in self.kb.errors):
            log.warning("learned phrasing for unknown target=%s ignored", target)
            return
        self.matcher.learn(error_id, text)
        if target in self.kb.causes:
            self.reader.learn(target, text)

    # -- conversation --------------------------------------------------------------------

    def _add_time_note(self, message: Message, reply: Reply) -> None:
        if reply.kind != "answer" or reply.error_id is None:
            return
        error = self.kb.error(reply.error_id)
        if not error.about_service_hours:
            return
        at = message.at or datetime.fromtimestamp(self.clock(), tz=JAPAN)
        if at.tzinfo is not None:
            at = at.astimezone(JAPAN)
        note = messages.service_hours_note(self.kb.municipality, at)
        if note:
            reply.text = f"{reply.text}\n{note}"

    def _load(self, key: str, now: float) -> tuple[State, bool]:
        """Load a conversation; a stale one restarts, and the flag says it had a question open."""
        state = State.from_json(self.store.load(key))
        if state.updated and now - state.updated > self.timeout_seconds:
            was_waiting = bool(state.pending_fact or state.clarify)
            return State(warned=state.warned), was_waiting
        return state, False

    def _respond(self, message: Message, query: Text, state: State) -> Reply:
        user = message.user
        if not query.compact or not any(ch.isalnum() for ch in query.compact):
            if state.pending_fact:
                return self._ask(user, state, state.pending_fact, messages.REASK)
            return Reply(user=user, kind="fallback", text=messages.EMPTY)

        if self._matches(self._reset, query, whole=True):
            state.restart()
            return Reply(user=user, kind="notice", text=messages.RESET)

        ranked = self.matcher.rank(query)
        if state.clarify:
            reply = self._after_clarify(user, query, state)
            if reply is not None:
                return reply
        if state.pending_fact:
            reply = self._after_question(user, query, state, ranked)
            if reply is not None:
                return reply
        if state.unsure:
            reply = self._after_unsure(user, query, state, ranked)
            if reply is not None:
                return reply
        return self._fresh(user, query, state, ranked)

    def _after_unsure(
        self, user: str, query: Text, state: State, ranked: list[Score]
    ) -> Reply | None:
        """Narrow a listed answer with a fact given afterwards (「ほかの店でもダメでした」)."""
        state.unsure = False
        top = ranked[0]
        if top.kind == "error" and top.entry_id not in state.errors and top.score >= IDENTIFY:
            return None
        revealed = self.reader.facts(query)
        evidence = self.reader.evidence(query)
        if not revealed and not evidence:
            return None
        state.facts.update(revealed)
        state.evidence = sorted({*state.evidence, *evidence})
        candidates = [Candidate(e, None, w) for e, w in state.errors.items()]
        return self._next_step(user, state, candidates)

    def _respond_image(self, message: Message, state: State) -> tuple[Reply, str]:
        """Read a photo of the kiosk screen and answer as if its message had been typed."""
        assert message.image is not None
        user = message.user
        try:
            result = ocr.read_image(message.image)
        except ocr.ImageError as exc:
            log.info("image rejected reason=%s", exc.reason)
            return Reply(user=user, kind="fallback", text=messages.IMAGE_REJECTED[exc.reason]), ""
        text = redact(screen.without_furniture(result.text)).text
        query = Text.of(text)
        seen = messages.image_read(normalize(text))
        found = screen.identify(self.matcher, query)
        state.restart()
        if found.error_id is not None:
            state.errors = {found.error_id: 1.0}
            candidates = [Candidate(e, None, s) for e, s in found.offered]
            reply = self._diagnose(user, query, state, candidates)
        elif found.offered:
            scores = [Score(e, "error", s, screen=s) for e, s in found.offered]
            reply = self._clarify(user, state, scores)
        else:
            reply = Reply(user=user, kind="fallback", text=messages.IMAGE_UNREADABLE)
        reply.text = f"{seen}\n\n{reply.text}" if seen else reply.text
        reply.ocr_text = query.compact
        return reply, text

    def _fresh(self, user: str, query: Text, state: State, ranked: list[Score]) -> Reply:
        errors = [s for s in ranked if s.kind == "error"]
        topics = [s for s in ranked if s.kind == "topic"]
        best = errors[0]
        runner_up = errors[1].score if len(errors) > 1 else 0.0
        candidates = [Candidate(s.entry_id, None, s.score) for s in errors[:MAX_CLARIFY]]
        state.restart()

        quoted = self._quoted(errors)
        if quoted is not None and quoted.score >= best.score - SPREAD:
            state.errors = {quoted.entry_id: 1.0}
            return self._diagnose(user, query, state, candidates)
        in_domain = (
            best.screen >= QUOTED
            or self._matches(self._domain, query)
            or self._has_specific_keyword(best)
        )
        if topics and topics[0].score >= TOPIC and topics[0].score > best.score:
            return self._topic(user, topics[0].entry_id, candidates)
        if in_domain and best.score >= IDENTIFY and best.score - runner_up >= MARGIN:
            state.errors = {best.entry_id: 1.0}
            return self._diagnose(user, query, state, candidates)

        if in_domain and best.score >= CONSIDER:
            # Several messages fit: a question may still tell them apart ("3回続けて？").
            close = [
                s for s in errors if s.score >= CONSIDER_RIVAL and best.score - s.score < SPREAD
            ][:MAX_CLARIFY]
            if len(close) > 1:
                state.errors = {s.entry_id: s.score for s in close}
                return self._diagnose(user, query, state, candidates, must_split=True)
            return self._clarify(user, state, [s for s in errors if s.score >= CONSIDER])

        if self._matches(self._vague, query):
            return Reply(user=user, kind="question", text=messages.ASK_SCREEN)
        if self._matches(self._thanks, query):
            return Reply(user=user, kind="notice", text=messages.THANKS)
        if self._matches(self._greeting, query):
            return Reply(user=user, kind="notice", text=messages.greeting(self.kb.municipality))
        return Reply(user=user, kind="fallback", text=messages.OUT_OF_SCOPE, candidates=[])

    @staticmethod
    def _has_specific_keyword(score: Score) -> bool:
        # A long keyword (一定時間操作, ロック中のため) places a message in the kiosk's world even
        # without a domain word; a short one (何時まで) does not.
        return any(
            len(Text.of(k).reading) >= SPECIFIC_READING
            for k in score.keywords
            if not k.startswith(REGEX_PREFIX)
        )

    @staticmethod
    def _quoted(errors: list[Score]) -> Score | None:
        """Return the message whose screen text the query clearly quotes, if exactly one is."""
        by_screen = sorted(errors, key=lambda s: s.screen, reverse=True)
        first = by_screen[0]
        second = by_screen[1].screen if len(by_screen) > 1 else 0.0
        if first.screen >= QUOTED and first.screen - second >= MARGIN:
            return first
        return None

    def _diagnose(
        self,
        user: str,
        query: Text,
        state: State,
        candidates: list[Candidate],
        must_split: bool = False,
    ) -> Reply:
        state.facts.update(self.reader.facts(query))
        state.evidence = sorted({*state.evidence, *self.reader.evidence(query)})
        return self._next_step(user, state, candidates, must_split)

    def _next_step(
        self,
        user: str,
        state: State,
        candidates: list[Candidate],
        must_split: bool = False,
    ) -> Reply:
        open_ = open_causes(self.kb, state.errors, state.facts, state.evidence)
        if not open_:
            # The facts rule out every cause: trust the match and list the causes instead.
            open_ = open_causes(self.kb, state.errors, {}, state.evidence)
        total = sum(o.weight for o in open_)
        top = open_[0]
        error_ids = {o.error_id for o in open_}
        if len(open_) == 1 or top.weight >= DOMINANT * total:
            return self._answer(user, top, candidates)
        if state.questions < MAX_QUESTIONS:
            fact = best_question(self.kb, open_, state.facts)
            if fact is not None:
                state.questions += 1
                state.pending_fact = fact.id
                error_id = next(iter(error_ids)) if len(error_ids) == 1 else None
                return self._ask(user, state, fact.id, None, error_id, candidates)
        if must_split and len(error_ids) > 1:
            return self._clarify(user, state, [])
        state.unsure = True
        return self._unsure(user, open_, candidates)

    def _after_question(
        self, user: str, query: Text, state: State, ranked: list[Score]
    ) -> Reply | None:
        fact_id = state.pending_fact
        assert fact_id is not None
        fact = self.kb.facts[fact_id]
        value = self.reader.choice_by_label(fact_id, query)
        if value is None:
            value = self.reader.facts(query, only=fact_id).get(fact_id)
        if value is None:
            value = self._yes_no(fact_id, query)
        if value is None and self._matches(self._unknown, query):
            value = UNKNOWN
        # A clear new kiosk message changes the subject; one already under diagnosis does not.
        top = ranked[0]
        elsewhere = top.kind == "error" and top.entry_id not in state.errors
        new_topic = elsewhere and (top.screen >= QUOTED or top.score >= IDENTIFY + MARGIN)
        if value is None and new_topic:
            return None
        if value is None and top.kind == "error" and top.screen >= QUOTED:
            # The person quotes one of the messages under diagnosis: that settles which.
            state.errors = {top.entry_id: 1.0}
        elif value is None:
            revealed = self.reader.facts(query)
            if not revealed and not self.reader.evidence(query):
                if self._matches(self._thanks, query):
                    state.pending_fact = None
                    return Reply(user=user, kind="notice", text=messages.THANKS)
                return self._ask(user, state, fact_id, messages.REASK)
            state.facts.update(revealed)
        else:
            state.facts[fact_id] = value if fact.choice(value) or value == UNKNOWN else UNKNOWN
            state.facts.update(
                {k: v for k, v in self.reader.facts(query).items() if k not in state.facts}
            )
        state.pending_fact = None
        state.evidence = sorted({*state.evidence, *self.reader.evidence(query)})
        self._add_related(state, ranked)
        candidates = [
            Candidate(e, None, w)
            for e, w in sorted(state.errors.items(), key=lambda item: item[1], reverse=True)
        ]
        return self._next_step(user, state, candidates)

    def _add_related(self, state: State, ranked: list[Score]) -> None:
        """Let an answer bring in a message it clearly names, if the same facts split them.

        「3回失敗して、置いた瞬間にロック中と出た」 answers the question between 7 and 8 and
        also names 9, which the questions about PIN failures tell apart from 8.
        """
        for score in ranked:
            if score.kind != "error" or score.score < IDENTIFY:
                break
            if score.entry_id in state.errors:
                continue
            if any(shared_facts(self.kb, score.entry_id, e) for e in state.errors):
                state.errors[score.entry_id] = score.score

    def _after_clarify(self, user: str, query: Text, state: State) -> Reply | None:
        options = state.clarify
        state.clarify = {}
        if query.compact == NONE_OF_THESE:
            return Reply(
                user=user,
                kind="fallback",
                text=messages.NONE_MATCHED.format(contact=messages.contact(self.kb.municipality)),
            )
        for label, error_id in options.items():
            if Text.of(label).compact == query.compact:
                state.errors = {error_id: 1.0}
                return self._diagnose(user, query, state, [Candidate(error_id, None, 1.0)])
        return None

    # -- replies -------------------------------------------------------------------------

    def _answer(self, user: str, chosen: Open, candidates: list[Candidate]) -> Reply:
        error = self.kb.error(chosen.error_id)
        cause = chosen.cause
        return Reply(
            user=user,
            kind="answer",
            text=messages.answer(error, cause, self.kb.municipality),
            error_id=error.id,
            cause_id=cause.id,
            candidates=candidates,
            sections=self._sections(error, cause.id),
        )

    def _unsure(self, user: str, open_: list[Open], candidates: list[Candidate]) -> Reply:
        listed = [(self.kb.error(o.error_id), o.cause) for o in open_[:4]]
        top = open_[0]
        return Reply(
            user=user,
            kind="answer",
            text=messages.unsure(listed, self.kb.municipality),
            error_id=top.error_id,
            cause_id=top.cause.id,
            candidates=candidates,
            sections=self._sections(self.kb.error(top.error_id), top.cause.id),
        )

    def _ask(
        self,
        user: str,
        state: State,
        fact_id: str,
        prefix: str | None,
        error_id: str | None = None,
        candidates: list[Candidate] | None = None,
    ) -> Reply:
        fact = self.kb.facts[fact_id]
        if error_id is None and len(state.errors) == 1:
            error_id = next(iter(state.errors))
        title = self.kb.error(error_id).title if error_id else None
        labels = [c.label for c in fact.choices]
        staff = state.audience == "staff"
        wording = fact.staff_question if staff and fact.staff_question else fact.question
        if prefix:
            body = prefix + "\n" + wording
        else:
            body = messages.question(title, wording, staff=staff, again=state.questions > 1)
        return Reply(
            user=user,
            kind="question",
            text=f"{body}\n{messages.choices_as_text(labels)}",
            error_id=error_id,
            candidates=candidates or [Candidate(e, None, w) for e, w in state.errors.items()],
            choices=labels,
            fact_id=fact_id,
        )

    def _clarify(self, user: str, state: State, scores: list[Score]) -> Reply:
        if scores:
            entries = [(s.entry_id, s.score) for s in scores[:MAX_CLARIFY]]
        else:
            entries = sorted(state.errors.items(), key=lambda kv: kv[1], reverse=True)
        options = {_label(self.kb.error(e)): e for e, _ in entries[:MAX_CLARIFY]}
        state.clarify = options
        state.pending_fact = None
        labels = [*options, messages.NONE_OF_THESE]
        return Reply(
            user=user,
            kind="clarify",
            text=f"{messages.CLARIFY}\n{messages.choices_as_text(labels)}",
            candidates=[Candidate(e, None, s) for e, s in entries[:MAX_CLARIFY]],
            choices=labels,
        )

    def _topic(self, user: str, topic_id: str, candidates: list[Candidate]) -> Reply:
        topic = self.kb.topic(topic_id)
        tail = messages.TOPIC_TAIL.format(contact=messages.contact(self.kb.municipality))
        return Reply(user=user, kind="fallback", text=f"{topic.answer}\n{tail}")

    def _sections(self, error: KioskError, cause_id: str) -> dict[str, str]:
        cause = self.kb.causes[cause_id]
        sources = "\n".join(
            " ".join(p for p in (s.title, s.url or "", f"({s.date})" if s.date else "") if p)
            for s in cause.sources
        )
        return {
            "title": f"エラー{error.id}「{error.title}」" if error.id.isdigit() else error.title,
            "screen": error.screen_text or "",
            "cause": cause.summary,
            "remedy": cause.remedy,
            "staff_notes": cause.staff_notes,
            "sources": sources,
        }

    # -- helpers -------------------------------------------------------------------------

    def _yes_no(self, fact_id: str, query: Text) -> str | None:
        """Map a bare yes or no to the choice marked with `means`, if the fact has one."""
        fact = self.kb.facts[fact_id]
        meanings = {c.means: c.value for c in fact.choices if c.means}
        if "no" in meanings and self._matches(self._no, query):
            return meanings["no"]
        if "yes" in meanings and self._matches(self._yes, query):
            return meanings["yes"]
        return None

    @staticmethod
    def _matches(candidates: tuple[Any, ...], query: Text, whole: bool = False) -> bool:
        if whole:
            return any(p.compact == query.compact for p in candidates)
        return any(p.found_in(query) for p in candidates)

    def _log(self, message: Message, text: str, reply: Reply, started: float) -> None:
        hashed = user_hash(message.channel, message.user)
        score = reply.candidates[0].score if reply.candidates else None
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "turn channel=%s user=%s kind=%s error=%s cause=%s score=%s ms=%.1f",
            message.channel,
            hashed,
            reply.kind,
            reply.error_id,
            reply.cause_id,
            f"{score:.2f}" if score is not None else "-",
            elapsed_ms,
        )
        log.debug("turn text=%r", text)
        self.store.log_turn(
            {
                "at": self.clock(),
                "channel": message.channel,
                "user_hash": hashed,
                "kind": reply.kind,
                "error_id": reply.error_id,
                "cause_id": reply.cause_id,
                "score": score,
                "redacted": int(reply.redacted),
                "text": text,
                "reply": _first_line(reply.text),
            }
        )


def _clean(text: str) -> str:
    # Lone surrogates cannot be encoded, stored or logged; drop them before anything else.
    return text.encode("utf-8", "ignore").decode("utf-8") if text else ""


def _label(error: KioskError) -> str:
    label = error.title
    return label if len(label) <= 20 else label[:19] + "…"


def _first_line(text: str) -> str:
    """Return the line of a reply that says what it is about, for the turn log and hand-offs."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("※")]
    for line in lines:
        if line.endswith(("？", "?")):
            return line[:200]
    return lines[0][:200] if lines else ""

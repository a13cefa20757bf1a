"""The store in Redis, for several workers or machines sharing one bot.

Same methods, return types and semantics as `SQLiteStore`. Every key starts with the prefix,
so several deployments can share one Redis database:

    conversation:{key}          JSON state, expires a day after the last save
    event:{event id}            processed event id, expires after 7 days
    turns, turns:{user hash}    lists of JSON turns, all and per resident
    feedback, learned           lists of JSON records
    turn:seq, feedback:seq      counters that number turns and feedback like SQLite row ids
    handoff:{id}                hash of one hand-off's fields, absent fields meaning None
    handoff:open:{key}          id of a conversation's open (waiting or active) hand-off
    handoff:thread:{chan}:{ts}  id of the hand-off that owns a Slack thread
    handoffs                    sorted set of all hand-off ids, scored by creation time
    handoffs:unanswered         the waiting, not yet notified subset of `handoffs`

Steps that must not interleave with another worker's (open, pick, close) run as Lua scripts,
which Redis executes atomically. Every text written here has passed the privacy guard.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import redis

from bot.store import Handoff, HandoffStatus, Learned

# Far longer than the default conversation timeout of 30 minutes. When the key expires, the
# resident loses only the "expired" notice and the privacy-warning flag that SQLite would keep.
CONVERSATION_TTL_SECONDS = 24 * 60 * 60
# An estimated wide margin over LINE and Slack webhook retry delays, not a documented limit. An
# event id delivered again after its key expired would be processed twice.
EVENT_TTL_SECONDS = 7 * 24 * 60 * 60

# KEYS: open index, new hand-off hash, all hand-offs, unanswered hand-offs.
# ARGV: new id, conversation key, channel, user, created_at.
OPEN_HANDOFF = """
local existing = redis.call('GET', KEYS[1])
if existing then
    return existing
end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'key', ARGV[2], 'channel', ARGV[3],
    'user', ARGV[4], 'status', 'waiting', 'created_at', ARGV[5], 'timeout_notified', '0')
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return ARGV[1]
"""

# KEYS: hand-off hash, unanswered hand-offs. ARGV: id, staff, picked_at.
PICK_HANDOFF = """
if redis.call('HGET', KEYS[1], 'status') ~= 'waiting' then
    return 0
end
redis.call('HSET', KEYS[1], 'status', 'active', 'staff', ARGV[2], 'picked_at', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: hand-off hash, unanswered hand-offs, open index of its conversation. ARGV: id, closed_at.
CLOSE_HANDOFF = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'closed' then
    return 0
end
redis.call('HSET', KEYS[1], 'status', 'closed', 'closed_at', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[1] then
    redis.call('DEL', KEYS[3])
end
return 1
"""

# KEYS: hand-off hash, thread index. ARGV: id, thread channel, thread ts.
SET_THREAD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'thread_channel', ARGV[2], 'thread_ts', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

# KEYS: hand-off hash, unanswered hand-offs. ARGV: id.
MARK_TIMEOUT_NOTIFIED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
if redis.call('HGET', KEYS[1], 'timeout_notified') == '1' then
    return 0
end
redis.call('HSET', KEYS[1], 'timeout_notified', '1')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class RedisStore:
    def __init__(self, url: str, prefix: str = "madoguchi:") -> None:
        self.url = url
        self.prefix = prefix
        self._redis: redis.Redis = redis.Redis.from_url(url, decode_responses=True)
        self._open_handoff = self._redis.register_script(OPEN_HANDOFF)
        self._pick_handoff = self._redis.register_script(PICK_HANDOFF)
        self._close_handoff = self._redis.register_script(CLOSE_HANDOFF)
        self._set_thread = self._redis.register_script(SET_THREAD)
        self._mark_timeout_notified = self._redis.register_script(MARK_TIMEOUT_NOTIFIED)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # redis-py types replies as bytes | str, but with decode_responses=True they are always str.

    def _get(self, key: str) -> str | None:
        return cast("str | None", self._redis.get(key))

    def _ids(self, key: str, low: float | str, high: float | str) -> list[str]:
        return cast("list[str]", self._redis.zrangebyscore(key, low, high))

    # -- conversations ---------------------------------------------------------------------

    def load(self, key: str) -> dict[str, Any] | None:
        raw = self._redis.get(self._key("conversation", key))
        return json.loads(raw) if raw is not None else None

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._redis.set(
            self._key("conversation", key),
            json.dumps(state, ensure_ascii=False),
            ex=CONVERSATION_TTL_SECONDS,
        )

    def delete(self, key: str) -> None:
        self._redis.delete(self._key("conversation", key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every conversation whose key starts with a prefix (a LINE group that left)."""
        pattern = self._key("conversation", _glob_escape(prefix)) + "*"
        for name in self._redis.scan_iter(match=pattern, count=500):
            self._redis.delete(name)

    # -- redelivery --------------------------------------------------------------------------

    def first_time(self, event_id: str) -> bool:
        """Record an event id and return False if it was already recorded."""
        added = self._redis.set(
            self._key("event", event_id), repr(time.time()), nx=True, ex=EVENT_TTL_SECONDS
        )
        return bool(added)

    # -- turn log ----------------------------------------------------------------------------

    def log_turn(self, record: dict[str, Any]) -> None:
        turn_id = self._redis.incr(self._key("turn", "seq"))
        entry = json.dumps({"id": turn_id, **record}, ensure_ascii=False)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self._key("turns"), entry)
            pipe.rpush(self._key("turns", record["user_hash"]), entry)
            pipe.execute()

    def recent_turns(self, user_hash: str, since: float, limit: int = 10) -> list[dict[str, Any]]:
        """Return a conversation's latest turns after a time, oldest first."""
        turns = self._records(self._key("turns", user_hash), since)
        return turns[-limit:] if limit > 0 else []

    def turns(self, since: float = 0.0) -> list[dict[str, Any]]:
        return self._records(self._key("turns"), since)

    def _records(self, key: str, since: float) -> list[dict[str, Any]]:
        # Two workers may push in the other order than they drew ids, so sort by id as SQLite does.
        records = [json.loads(raw) for raw in self._redis.lrange(key, 0, -1)]
        records.sort(key=lambda record: record["id"])
        return [record for record in records if record["at"] >= since]

    # -- hand-offs -----------------------------------------------------------------------------

    def open_handoff(self, key: str, channel: str, user: str) -> Handoff:
        """Start a hand-off for a conversation, or return the one already open."""
        new_id = uuid.uuid4().hex
        handoff_id = self._open_handoff(
            keys=[
                self._key("handoff", "open", key),
                self._key("handoff", new_id),
                self._key("handoffs"),
                self._key("handoffs", "unanswered"),
            ],
            args=[new_id, key, channel, user, repr(time.time())],
        )
        handoff = self.handoff(str(handoff_id))
        assert handoff is not None
        return handoff

    def handoff(self, handoff_id: str) -> Handoff | None:
        return _handoff(
            cast("dict[str, str]", self._redis.hgetall(self._key("handoff", handoff_id)))
        )

    def handoff_for(self, key: str) -> Handoff | None:
        """Return the open (waiting or active) hand-off of a conversation."""
        handoff_id = self._get(self._key("handoff", "open", key))
        if handoff_id is None:
            return None
        handoff = self.handoff(handoff_id)
        return handoff if handoff is not None and handoff.status != "closed" else None

    def handoff_by_thread(self, thread_channel: str, thread_ts: str) -> Handoff | None:
        handoff_id = self._get(self._key("handoff", "thread", thread_channel, thread_ts))
        if handoff_id is None:
            return None
        handoff = self.handoff(handoff_id)
        # The index keeps pointing here after the hand-off moves to another thread.
        if handoff is None or (handoff.thread_channel, handoff.thread_ts) != (
            thread_channel,
            thread_ts,
        ):
            return None
        return handoff

    def set_handoff_thread(self, handoff_id: str, thread_channel: str, thread_ts: str) -> None:
        self._set_thread(
            keys=[
                self._key("handoff", handoff_id),
                self._key("handoff", "thread", thread_channel, thread_ts),
            ],
            args=[handoff_id, thread_channel, thread_ts],
        )

    def pick_handoff(self, handoff_id: str, staff: str) -> bool:
        """Mark a waiting hand-off as taken by a staff member; False if it was not waiting."""
        picked = self._pick_handoff(
            keys=[self._key("handoff", handoff_id), self._key("handoffs", "unanswered")],
            args=[handoff_id, staff, repr(time.time())],
        )
        return bool(picked == 1)

    def close_handoff(self, handoff_id: str) -> bool:
        # A hand-off's conversation key never changes, so reading it first is race-free.
        key = cast("str | None", self._redis.hget(self._key("handoff", handoff_id), "key"))
        if key is None:
            return False
        closed = self._close_handoff(
            keys=[
                self._key("handoff", handoff_id),
                self._key("handoffs", "unanswered"),
                self._key("handoff", "open", key),
            ],
            args=[handoff_id, repr(time.time())],
        )
        return bool(closed == 1)

    def unanswered_handoffs(self, older_than: float) -> list[Handoff]:
        """Return waiting hand-offs created before a time whose resident was not yet notified."""
        ids = self._ids(self._key("handoffs", "unanswered"), "-inf", f"({older_than!r}")
        return [
            handoff
            for handoff in self._handoffs(ids)
            if handoff.status == "waiting" and not handoff.timeout_notified
        ]

    def mark_timeout_notified(self, handoff_id: str) -> bool:
        """Mark that the person was told no one picked the hand-off up; False if already marked."""
        marked = self._mark_timeout_notified(
            keys=[self._key("handoff", handoff_id), self._key("handoffs", "unanswered")],
            args=[handoff_id],
        )
        return bool(marked)

    def handoffs(self, since: float = 0.0) -> list[Handoff]:
        return self._handoffs(self._ids(self._key("handoffs"), since, "+inf"))

    def _handoffs(self, ids: list[str]) -> list[Handoff]:
        with self._redis.pipeline(transaction=False) as pipe:
            for handoff_id in ids:
                pipe.hgetall(self._key("handoff", handoff_id))
            rows: list[dict[str, str]] = pipe.execute()
        return [h for h in (_handoff(row) for row in rows) if h is not None]

    # -- feedback and learned phrasings ---------------------------------------------------------

    def add_feedback(self, record: dict[str, Any]) -> None:
        feedback_id = self._redis.incr(self._key("feedback", "seq"))
        entry = json.dumps({"id": feedback_id, **record}, ensure_ascii=False)
        self._redis.rpush(self._key("feedback"), entry)

    def feedback(self, since: float = 0.0) -> list[dict[str, Any]]:
        return self._records(self._key("feedback"), since)

    def add_learned(self, target: str, text: str, staff: str | None = None) -> None:
        entry = {"at": time.time(), "target": target, "text": text, "staff": staff}
        self._redis.rpush(self._key("learned"), json.dumps(entry, ensure_ascii=False))

    def learned(self) -> list[Learned]:
        entries = [json.loads(raw) for raw in self._redis.lrange(self._key("learned"), 0, -1)]
        return [Learned(target=entry["target"], text=entry["text"]) for entry in entries]

    def close(self) -> None:
        self._redis.close()


def _handoff(row: dict[str, str]) -> Handoff | None:
    if not row:
        return None
    return Handoff(
        id=row["id"],
        key=row["key"],
        channel=row["channel"],
        user=row["user"],
        status=cast(HandoffStatus, row["status"]),
        created_at=float(row["created_at"]),
        picked_at=_float(row.get("picked_at")),
        closed_at=_float(row.get("closed_at")),
        staff=row.get("staff"),
        thread_channel=row.get("thread_channel"),
        thread_ts=row.get("thread_ts"),
        timeout_notified=row.get("timeout_notified") == "1",
    )


def _float(value: str | None) -> float | None:
    return float(value) if value is not None else None


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)

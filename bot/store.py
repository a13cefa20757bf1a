"""Conversation state, processed event ids, hand-offs, feedback, learned phrasings, turn log.

SQLite in WAL mode; one connection per thread because sqlite3 connections must not be shared
across threads. Without a path the database lives in memory for the life of the store (the
`ask --jsonl` replay and tests). Every text written here has passed the privacy guard.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    channel TEXT NOT NULL,
    user_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    error_id TEXT,
    cause_id TEXT,
    score REAL,
    redacted INTEGER NOT NULL,
    text TEXT NOT NULL,
    reply TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS handoffs (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    user TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    picked_at REAL,
    closed_at REAL,
    staff TEXT,
    thread_channel TEXT,
    thread_ts TEXT,
    timeout_notified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS handoffs_key ON handoffs (key, status);
-- At most one open hand-off per conversation, even when workers race.
CREATE UNIQUE INDEX IF NOT EXISTS handoffs_open ON handoffs (key) WHERE status != 'closed';
CREATE INDEX IF NOT EXISTS handoffs_thread ON handoffs (thread_channel, thread_ts);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    channel TEXT NOT NULL,
    user_hash TEXT NOT NULL,
    error_id TEXT,
    cause_id TEXT,
    resolved INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS learned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    target TEXT NOT NULL,
    text TEXT NOT NULL,
    staff TEXT
);
"""

HandoffStatus = Literal["waiting", "active", "closed"]


@dataclass(frozen=True)
class Handoff:
    """A resident's conversation passed to city staff."""

    id: str
    key: str
    channel: str
    user: str
    status: HandoffStatus
    created_at: float
    picked_at: float | None
    closed_at: float | None
    staff: str | None
    thread_channel: str | None
    thread_ts: str | None
    timeout_notified: bool


@dataclass(frozen=True)
class Learned:
    """A phrasing staff registered for a kiosk message ("7") or a cause ("1a")."""

    target: str
    text: str


class _Result:
    """Rows and change count of one statement, read before the next statement runs."""

    def __init__(self, rows: list[sqlite3.Row], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> sqlite3.Row | None:
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Iterator[sqlite3.Row]:
        return iter(self.rows)


class SQLiteStore:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._target = str(self.path)
            self._uri = False
        else:
            self._target = f"file:madoguchi-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._uri = True
        self._local = threading.local()
        self._lock = threading.Lock()
        # An in-memory database lives as long as one connection to it is open.
        self._keeper = self._open()
        if self.path is not None:
            self._keeper.execute("PRAGMA journal_mode=WAL")
        self._keeper.executescript(SCHEMA)
        self._migrate()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._target, timeout=10, isolation_level=None, uri=self._uri, check_same_thread=False
        )
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA synchronous=NORMAL")
        db.row_factory = sqlite3.Row
        return db

    def _migrate(self) -> None:
        # Files made before the turn log kept the bot's reply lack that column.
        columns = {row[1] for row in self._keeper.execute("PRAGMA table_info(turns)")}
        if "reply" not in columns:
            self._keeper.execute("ALTER TABLE turns ADD COLUMN reply TEXT NOT NULL DEFAULT ''")

    def _execute(self, sql: str, parameters: Any = ()) -> _Result:
        # sqlite3 reports rowcount from the connection's last change. Two threads on one
        # connection (the in-memory store) could read each other's count, so a lock keeps each
        # statement and its result together.
        with self._lock:
            cursor = self._db().execute(sql, parameters)
            return _Result(cursor.fetchall(), cursor.rowcount)

    def _db(self) -> sqlite3.Connection:
        if self.path is None:
            # One shared connection: in shared-cache memory mode a second connection's open
            # cursor can lock a table ("database table is locked"). sqlite3 serializes it.
            return self._keeper
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._open()
            self._local.db = db
        return db

    # -- conversations ---------------------------------------------------------------------

    def load(self, key: str) -> dict[str, Any] | None:
        row = self._execute("SELECT state FROM conversations WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO conversations (key, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET "
            "state = excluded.state, updated_at = excluded.updated_at",
            (key, json.dumps(state, ensure_ascii=False), time.time()),
        )

    def delete(self, key: str) -> None:
        self._execute("DELETE FROM conversations WHERE key = ?", (key,))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every conversation whose key starts with a prefix (a LINE group that left)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        self._execute("DELETE FROM conversations WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",))

    # -- redelivery --------------------------------------------------------------------------

    def first_time(self, event_id: str) -> bool:
        """Record an event id; return False if it was already recorded."""
        cursor = self._execute(
            "INSERT OR IGNORE INTO events (id, seen_at) VALUES (?, ?)", (event_id, time.time())
        )
        return cursor.rowcount == 1

    # -- turn log ----------------------------------------------------------------------------

    def log_turn(self, record: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO turns (at, channel, user_hash, kind, error_id, cause_id, score, "
            "redacted, text, reply) VALUES (:at, :channel, :user_hash, :kind, :error_id, "
            ":cause_id, :score, :redacted, :text, :reply)",
            {"reply": "", **record},
        )

    def recent_turns(self, user_hash: str, since: float, limit: int = 10) -> list[dict[str, Any]]:
        """Return a conversation's latest turns after a time, oldest first."""
        rows = self._execute(
            "SELECT * FROM turns WHERE user_hash = ? AND at >= ? ORDER BY id DESC LIMIT ?",
            (user_hash, since, limit),
        )
        return [dict(row) for row in rows][::-1]

    def turns(self, since: float = 0.0) -> list[dict[str, Any]]:
        rows = self._execute("SELECT * FROM turns WHERE at >= ? ORDER BY id", (since,))
        return [dict(row) for row in rows]

    # -- hand-offs -----------------------------------------------------------------------------

    def open_handoff(self, key: str, channel: str, user: str) -> Handoff:
        """Start a hand-off for a conversation, or return the one already open."""
        self._execute(
            "INSERT OR IGNORE INTO handoffs (id, key, channel, user, status, created_at) "
            "VALUES (?, ?, ?, ?, 'waiting', ?)",
            (uuid.uuid4().hex, key, channel, user, time.time()),
        )
        handoff = self.handoff_for(key)
        assert handoff is not None
        return handoff

    def handoff(self, handoff_id: str) -> Handoff | None:
        row = self._execute("SELECT * FROM handoffs WHERE id = ?", (handoff_id,)).fetchone()
        return _handoff(row)

    def handoff_for(self, key: str) -> Handoff | None:
        """Return the open (waiting or active) hand-off of a conversation."""
        row = self._execute(
            "SELECT * FROM handoffs WHERE key = ? AND status != 'closed' "
            "ORDER BY created_at DESC LIMIT 1",
            (key,),
        ).fetchone()
        return _handoff(row)

    def handoff_by_thread(self, thread_channel: str, thread_ts: str) -> Handoff | None:
        row = self._execute(
            "SELECT * FROM handoffs WHERE thread_channel = ? AND thread_ts = ?",
            (thread_channel, thread_ts),
        ).fetchone()
        return _handoff(row)

    def set_handoff_thread(self, handoff_id: str, thread_channel: str, thread_ts: str) -> None:
        self._execute(
            "UPDATE handoffs SET thread_channel = ?, thread_ts = ? WHERE id = ?",
            (thread_channel, thread_ts, handoff_id),
        )

    def pick_handoff(self, handoff_id: str, staff: str) -> bool:
        """Mark a waiting hand-off as taken by a staff member; False if it was not waiting."""
        cursor = self._execute(
            "UPDATE handoffs SET status = 'active', staff = ?, picked_at = ? "
            "WHERE id = ? AND status = 'waiting'",
            (staff, time.time(), handoff_id),
        )
        return cursor.rowcount == 1

    def close_handoff(self, handoff_id: str) -> bool:
        cursor = self._execute(
            "UPDATE handoffs SET status = 'closed', closed_at = ? "
            "WHERE id = ? AND status != 'closed'",
            (time.time(), handoff_id),
        )
        return cursor.rowcount == 1

    def unanswered_handoffs(self, older_than: float) -> list[Handoff]:
        """Return waiting hand-offs created before a time whose person was not yet told."""
        rows = self._execute(
            "SELECT * FROM handoffs WHERE status = 'waiting' AND timeout_notified = 0 "
            "AND created_at < ?",
            (older_than,),
        )
        return [h for h in (_handoff(row) for row in rows) if h is not None]

    def mark_timeout_notified(self, handoff_id: str) -> bool:
        """Mark that the person was told no one picked the hand-off up; False if already marked."""
        result = self._execute(
            "UPDATE handoffs SET timeout_notified = 1 WHERE id = ? AND timeout_notified = 0",
            (handoff_id,),
        )
        return result.rowcount == 1

    def handoffs(self, since: float = 0.0) -> list[Handoff]:
        rows = self._execute(
            "SELECT * FROM handoffs WHERE created_at >= ? ORDER BY created_at", (since,)
        )
        return [h for h in (_handoff(row) for row in rows) if h is not None]

    # -- feedback and learned phrasings ---------------------------------------------------------

    def add_feedback(self, record: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO feedback (at, channel, user_hash, error_id, cause_id, resolved) "
            "VALUES (:at, :channel, :user_hash, :error_id, :cause_id, :resolved)",
            record,
        )

    def feedback(self, since: float = 0.0) -> list[dict[str, Any]]:
        rows = self._execute("SELECT * FROM feedback WHERE at >= ? ORDER BY id", (since,))
        return [dict(row) for row in rows]

    def add_learned(self, target: str, text: str, staff: str | None = None) -> None:
        self._execute(
            "INSERT INTO learned (at, target, text, staff) VALUES (?, ?, ?, ?)",
            (time.time(), target, text, staff),
        )

    def learned(self) -> list[Learned]:
        rows = self._execute("SELECT target, text FROM learned ORDER BY id")
        return [Learned(target=row["target"], text=row["text"]) for row in rows]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        self._keeper.close()


class MemoryStore(SQLiteStore):
    """A store that lives as long as the object: for `ask --jsonl` replays and tests."""

    def __init__(self) -> None:
        super().__init__(None)


class Store(Protocol):
    """The storage interface of the core and adapters, implemented by SQLiteStore and RedisStore."""

    def load(self, key: str) -> dict[str, Any] | None: ...
    def save(self, key: str, state: dict[str, Any]) -> None: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def first_time(self, event_id: str) -> bool: ...
    def log_turn(self, record: dict[str, Any]) -> None: ...
    def recent_turns(
        self, user_hash: str, since: float, limit: int = 10
    ) -> list[dict[str, Any]]: ...
    def turns(self, since: float = 0.0) -> list[dict[str, Any]]: ...
    def open_handoff(self, key: str, channel: str, user: str) -> Handoff: ...
    def handoff(self, handoff_id: str) -> Handoff | None: ...
    def handoff_for(self, key: str) -> Handoff | None: ...
    def handoff_by_thread(self, thread_channel: str, thread_ts: str) -> Handoff | None: ...
    def set_handoff_thread(self, handoff_id: str, thread_channel: str, thread_ts: str) -> None: ...
    def pick_handoff(self, handoff_id: str, staff: str) -> bool: ...
    def close_handoff(self, handoff_id: str) -> bool: ...
    def unanswered_handoffs(self, older_than: float) -> list[Handoff]: ...
    def mark_timeout_notified(self, handoff_id: str) -> bool: ...
    def handoffs(self, since: float = 0.0) -> list[Handoff]: ...
    def add_feedback(self, record: dict[str, Any]) -> None: ...
    def feedback(self, since: float = 0.0) -> list[dict[str, Any]]: ...
    def add_learned(self, target: str, text: str, staff: str | None = None) -> None: ...
    def learned(self) -> list[Learned]: ...
    def close(self) -> None: ...


def open_store(db_path: str | Path, redis_url: str = "") -> Store:
    """Return the Redis store when a URL is set, else the SQLite store at db_path."""
    if redis_url:
        from bot.redis_store import RedisStore

        return RedisStore(redis_url)
    return SQLiteStore(db_path)


def _handoff(row: sqlite3.Row | None) -> Handoff | None:
    if row is None:
        return None
    values = dict(row)
    values["timeout_notified"] = bool(values["timeout_notified"])
    return Handoff(**values)

"""Conversation state, processed event ids and the redacted turn log.

SQLite in WAL mode is the default; one connection per thread because sqlite3 connections
must not be shared across threads. Every value written here has passed the privacy guard.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

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
    text TEXT NOT NULL
);
"""


class Store(Protocol):
    def load(self, key: str) -> dict[str, Any] | None: ...

    def save(self, key: str, state: dict[str, Any]) -> None: ...

    def delete(self, key: str) -> None: ...

    def first_time(self, event_id: str) -> bool:
        """Record an event id; return False if it was already recorded."""
        ...

    def log_turn(self, record: dict[str, Any]) -> None: ...


class MemoryStore:
    """A store that lives as long as the process: for `ask --jsonl` and tests."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}
        self._events: set[str] = set()
        self._lock = threading.Lock()
        self.turns: list[dict[str, Any]] = []

    def load(self, key: str) -> dict[str, Any] | None:
        raw = self._states.get(key)
        return json.loads(raw) if raw is not None else None

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._states[key] = json.dumps(state, ensure_ascii=False)

    def delete(self, key: str) -> None:
        self._states.pop(key, None)

    def first_time(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._events:
                return False
            self._events.add(event_id)
            return True

    def log_turn(self, record: dict[str, Any]) -> None:
        self.turns.append(dict(record))


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def load(self, key: str) -> dict[str, Any] | None:
        row = (
            self._connect()
            .execute("SELECT state FROM conversations WHERE key = ?", (key,))
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._connect().execute(
            "INSERT INTO conversations (key, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET "
            "state = excluded.state, updated_at = excluded.updated_at",
            (key, json.dumps(state, ensure_ascii=False), time.time()),
        )

    def delete(self, key: str) -> None:
        self._connect().execute("DELETE FROM conversations WHERE key = ?", (key,))

    def first_time(self, event_id: str) -> bool:
        cursor = self._connect().execute(
            "INSERT OR IGNORE INTO events (id, seen_at) VALUES (?, ?)", (event_id, time.time())
        )
        return cursor.rowcount == 1

    def log_turn(self, record: dict[str, Any]) -> None:
        self._connect().execute(
            "INSERT INTO turns (at, channel, user_hash, kind, error_id, cause_id, score, "
            "redacted, text) VALUES (:at, :channel, :user_hash, :kind, :error_id, :cause_id, "
            ":score, :redacted, :text)",
            record,
        )

    def turns(self) -> list[dict[str, Any]]:
        cursor = self._connect().execute("SELECT * FROM turns ORDER BY id")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

"""Store contract: SQLiteStore (file and in-memory) and RedisStore behave the same.

The Redis cases run against a real redis-server started on a free loopback port for this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.redis_store import CONVERSATION_TTL_SECONDS, EVENT_TTL_SECONDS, RedisStore
from bot.store import MemoryStore, SQLiteStore
from tests.conftest import skip_without_redis

RACERS = 16

Store = SQLiteStore | RedisStore


@pytest.fixture(
    params=[
        "sqlite",
        "memory",
        pytest.param("redis", marks=[pytest.mark.redis, skip_without_redis]),
    ]
)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Return a factory of stores that share one backing database, so a test can act as two
    workers. Every store it makes is closed after the test."""
    made: list[Store] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        request.getfixturevalue("redis_client")  # flushes the database

        def make() -> Store:
            made.append(RedisStore(url, prefix="test:"))
            return made[-1]
    elif request.param == "sqlite":

        def make() -> Store:
            made.append(SQLiteStore(tmp_path / "s.sqlite3"))
            return made[-1]
    else:
        memory = MemoryStore()

        def make() -> Store:
            return memory

        made.append(memory)
    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()


def _race(action: Callable[[], Any]) -> list[Any]:
    """Run an action in RACERS threads that start together and return their results."""
    barrier = threading.Barrier(RACERS)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            result = action()
        except BaseException as error:
            with lock:
                errors.append(error)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _turn(at: float, user_hash: str, text: str, **fields: Any) -> dict[str, Any]:
    record = {
        "at": at,
        "channel": "line",
        "user_hash": user_hash,
        "kind": "answer",
        "error_id": "7",
        "cause_id": "7a",
        "score": 0.8125,
        "redacted": 0,
        "text": text,
    }
    record.update(fields)
    return record


# -- conversations ---------------------------------------------------------------------------


def test_conversation_round_trip(store: Store) -> None:
    state = {
        "errors": {"7": 0.9},
        "facts": {"card": "マイナンバーカード"},
        "evidence": ["暗証番号がちがう"],
        "pending_fact": None,
        "warned": True,
        "updated": 1700000000.123456,
    }

    assert store.load("line:U1") is None
    store.save("line:U1", state)

    assert store.load("line:U1") == state
    assert store.load("line:U2") is None


def test_conversation_save_overwrites(store: Store) -> None:
    store.save("line:U1", {"questions": 1})
    store.save("line:U1", {"questions": 2})

    assert store.load("line:U1") == {"questions": 2}


def test_conversation_delete(store: Store) -> None:
    store.save("line:U1", {"questions": 1})
    store.save("line:U2", {"questions": 5})

    store.delete("line:U1")
    store.delete("line:missing")

    assert store.load("line:U1") is None
    assert store.load("line:U2") == {"questions": 5}


# -- redelivery ------------------------------------------------------------------------------


def test_first_time_once_per_event(store: Store) -> None:
    assert store.first_time("line:evt-1") is True
    assert store.first_time("line:evt-1") is False
    assert store.first_time("line:evt-2") is True


def test_first_time_racing_threads(store: Store) -> None:
    results = _race(lambda: store.first_time("slack:Ev123"))

    assert len(results) == RACERS
    assert results.count(True) == 1


def test_first_time_racing_workers(make_store: Callable[[], Store]) -> None:
    workers = [make_store() for _ in range(RACERS)]
    turn = iter(workers)
    lock = threading.Lock()

    def claim() -> bool:
        with lock:
            worker = next(turn)
        return worker.first_time("line:evt-shared")

    results = _race(claim)

    assert results.count(True) == 1


# -- turn log --------------------------------------------------------------------------------


def test_turns_round_trip(store: Store) -> None:
    record = _turn(1000.5, "hash-a", "カードが読み取れません", score=None, redacted=1)
    store.log_turn(record)

    [turn] = store.turns()

    assert isinstance(turn["id"], int)
    assert {key: turn[key] for key in record} == record


def test_turns_since_filter(store: Store) -> None:
    for at in (100.0, 200.0, 300.0):
        store.log_turn(_turn(at, "hash-a", f"t{at}"))

    assert [t["at"] for t in store.turns()] == [100.0, 200.0, 300.0]
    assert [t["at"] for t in store.turns(200.0)] == [200.0, 300.0]
    assert store.turns(300.5) == []


def test_turns_ids_increase(store: Store) -> None:
    for at in (100.0, 200.0, 300.0):
        store.log_turn(_turn(at, "hash-a", "x"))

    ids = [t["id"] for t in store.turns()]

    assert ids == sorted(ids)
    assert len(set(ids)) == 3


def test_recent_turns_order_and_limit(store: Store) -> None:
    for index in range(6):
        store.log_turn(_turn(100.0 + index, "hash-a", f"a{index}"))
        store.log_turn(_turn(100.5 + index, "hash-b", f"b{index}"))

    recent = store.recent_turns("hash-a", since=0.0, limit=3)

    assert [t["text"] for t in recent] == ["a3", "a4", "a5"]
    assert all(t["user_hash"] == "hash-a" for t in recent)


def test_recent_turns_since_filter(store: Store) -> None:
    for index in range(6):
        store.log_turn(_turn(100.0 + index, "hash-a", f"a{index}"))

    recent = store.recent_turns("hash-a", since=104.0, limit=10)

    assert [t["text"] for t in recent] == ["a4", "a5"]


def test_recent_turns_unknown_user(store: Store) -> None:
    store.log_turn(_turn(100.0, "hash-a", "a"))

    assert store.recent_turns("hash-z", since=0.0) == []


# -- hand-offs -------------------------------------------------------------------------------


def test_open_handoff_twice_same_id(store: Store) -> None:
    first = store.open_handoff("line:U1", "line", "U1")
    second = store.open_handoff("line:U1", "line", "U1")
    other = store.open_handoff("line:U2", "line", "U2")

    assert second.id == first.id
    assert other.id != first.id
    assert first.status == "waiting"
    assert (first.key, first.channel, first.user) == ("line:U1", "line", "U1")
    assert first.picked_at is None
    assert first.closed_at is None
    assert first.staff is None
    assert first.timeout_notified is False
    assert store.handoff_for("line:U1") == first
    assert store.handoff(first.id) == first


def test_open_handoff_racing_workers(
    make_store: Callable[[], Store], request: pytest.FixtureRequest
) -> None:
    workers = [make_store() for _ in range(RACERS)]
    turn = iter(workers)
    lock = threading.Lock()

    def open_one() -> str:
        with lock:
            worker = next(turn)
        return worker.open_handoff("line:U1", "line", "U1").id

    ids = _race(open_one)

    assert len(set(ids)) == 1
    assert len(workers[0].handoffs()) == 1


def test_handoff_thread_lookup(store: Store) -> None:
    handoff = store.open_handoff("line:U1", "line", "U1")

    assert store.handoff_by_thread("C1", "1700000000.000100") is None
    store.set_handoff_thread(handoff.id, "C1", "1700000000.000100")

    found = store.handoff_by_thread("C1", "1700000000.000100")
    assert found is not None
    assert found.id == handoff.id
    assert (found.thread_channel, found.thread_ts) == ("C1", "1700000000.000100")
    assert store.handoff_by_thread("C1", "1700000000.000200") is None
    assert store.handoff_by_thread("C2", "1700000000.000100") is None


def test_handoff_thread_moves(store: Store) -> None:
    handoff = store.open_handoff("line:U1", "line", "U1")
    store.set_handoff_thread(handoff.id, "C1", "1.0")
    store.set_handoff_thread(handoff.id, "C1", "2.0")

    moved = store.handoff_by_thread("C1", "2.0")

    assert moved is not None
    assert moved.id == handoff.id
    assert store.handoff_by_thread("C1", "1.0") is None


def test_handoff_unknown_id_changes_nothing(store: Store) -> None:
    store.set_handoff_thread("missing", "C1", "1.0")
    assert store.mark_timeout_notified("missing") is False

    assert store.pick_handoff("missing", "staff-1") is False
    assert store.close_handoff("missing") is False
    assert store.handoff("missing") is None
    assert store.handoff_by_thread("C1", "1.0") is None
    assert store.handoffs() == []


def test_pick_handoff_once(store: Store) -> None:
    handoff = store.open_handoff("line:U1", "line", "U1")

    assert store.pick_handoff(handoff.id, "staff-1") is True
    assert store.pick_handoff(handoff.id, "staff-2") is False

    picked = store.handoff(handoff.id)
    assert picked is not None
    assert picked.status == "active"
    assert picked.staff == "staff-1"
    assert picked.picked_at is not None
    assert store.handoff_for("line:U1") == picked


def test_pick_handoff_racing_workers(make_store: Callable[[], Store]) -> None:
    workers = [make_store() for _ in range(RACERS)]
    handoff = workers[0].open_handoff("line:U1", "line", "U1")
    names = iter(range(RACERS))
    lock = threading.Lock()

    def pick() -> tuple[str, bool]:
        with lock:
            index = next(names)
        staff = f"staff-{index}"
        return staff, workers[index].pick_handoff(handoff.id, staff)

    results = _race(pick)
    winners = [staff for staff, picked in results if picked]

    assert len(winners) == 1
    picked = workers[0].handoff(handoff.id)
    assert picked is not None
    assert picked.staff == winners[0]


def test_close_handoff(store: Store) -> None:
    handoff = store.open_handoff("line:U1", "line", "U1")
    store.pick_handoff(handoff.id, "staff-1")

    assert store.close_handoff(handoff.id) is True
    assert store.close_handoff(handoff.id) is False

    closed = store.handoff(handoff.id)
    assert closed is not None
    assert closed.status == "closed"
    assert closed.closed_at is not None
    assert closed.staff == "staff-1"
    assert store.handoff_for("line:U1") is None
    assert store.pick_handoff(handoff.id, "staff-2") is False


def test_open_after_close_new_handoff(store: Store) -> None:
    first = store.open_handoff("line:U1", "line", "U1")
    store.close_handoff(first.id)

    second = store.open_handoff("line:U1", "line", "U1")

    assert second.id != first.id
    assert second.status == "waiting"
    assert store.handoff_for("line:U1") == second


def test_close_waiting_handoff(store: Store) -> None:
    handoff = store.open_handoff("line:U1", "line", "U1")

    assert store.close_handoff(handoff.id) is True
    assert store.pick_handoff(handoff.id, "staff-1") is False
    assert store.unanswered_handoffs(time.time() + 60) == []


def test_unanswered_handoffs(store: Store) -> None:
    waiting = store.open_handoff("line:U1", "line", "U1")
    picked = store.open_handoff("line:U2", "line", "U2")
    store.pick_handoff(picked.id, "staff-1")
    later = time.time() + 60

    assert [h.id for h in store.unanswered_handoffs(later)] == [waiting.id]
    assert store.unanswered_handoffs(waiting.created_at) == []
    assert store.unanswered_handoffs(waiting.created_at - 60) == []


def test_mark_timeout_notified(store: Store) -> None:
    first = store.open_handoff("line:U1", "line", "U1")
    second = store.open_handoff("line:U2", "line", "U2")

    assert store.mark_timeout_notified(first.id) is True
    assert store.mark_timeout_notified(first.id) is False

    notified = store.handoff(first.id)
    assert notified is not None
    assert notified.timeout_notified is True
    assert notified.status == "waiting"
    assert [h.id for h in store.unanswered_handoffs(time.time() + 60)] == [second.id]
    assert store.pick_handoff(first.id, "staff-1") is True


def test_handoffs_since(store: Store) -> None:
    first = store.open_handoff("line:U1", "line", "U1")
    time.sleep(0.01)
    second = store.open_handoff("slack:U2", "slack", "U2")
    store.close_handoff(first.id)

    assert [h.id for h in store.handoffs()] == [first.id, second.id]
    assert [h.id for h in store.handoffs(second.created_at)] == [second.id]
    assert store.handoffs(second.created_at + 60) == []
    assert [h.status for h in store.handoffs()] == ["closed", "waiting"]


def test_handoff_shared_between_workers(make_store: Callable[[], Store]) -> None:
    front, back = make_store(), make_store()
    handoff = front.open_handoff("line:U1", "line", "U1")
    front.set_handoff_thread(handoff.id, "C1", "1.0")

    found = back.handoff_by_thread("C1", "1.0")

    assert found is not None
    assert found.id == handoff.id
    assert back.pick_handoff(handoff.id, "staff-1") is True
    assert front.pick_handoff(handoff.id, "staff-2") is False


# -- feedback and learned phrasings ------------------------------------------------------------


def test_feedback_round_trip(store: Store) -> None:
    records = [
        {
            "at": 100.0 + index,
            "channel": "line",
            "user_hash": f"hash-{index}",
            "error_id": "7",
            "cause_id": None if index == 1 else "7a",
            "resolved": index % 2,
        }
        for index in range(3)
    ]
    for record in records:
        store.add_feedback(record)

    stored = store.feedback()

    assert [{key: row[key] for key in records[0]} for row in stored] == records
    assert [row["at"] for row in store.feedback(101.0)] == [101.0, 102.0]


def test_learned_round_trip(store: Store) -> None:
    store.add_learned("7", "カードがエラーになる", "staff-1")
    store.add_learned("1a", "暗証番号をまちがえた")

    learned = store.learned()

    assert [(item.target, item.text) for item in learned] == [
        ("7", "カードがエラーになる"),
        ("1a", "暗証番号をまちがえた"),
    ]


# -- backend specifics -----------------------------------------------------------------------


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = SQLiteStore(path)
    first.save("line:U1", {"questions": 2})
    first.first_time("line:evt-1")
    first.log_turn(_turn(100.0, "hash-a", "a"))
    handoff = first.open_handoff("line:U1", "line", "U1")
    first.set_handoff_thread(handoff.id, "C1", "1.0")
    first.add_feedback(
        {
            "at": 100.0,
            "channel": "line",
            "user_hash": "hash-a",
            "error_id": "7",
            "cause_id": "7a",
            "resolved": 1,
        }
    )
    first.add_learned("7", "カードがエラーになる")
    first.close()
    first._keeper.close()

    second = SQLiteStore(path)

    assert second.load("line:U1") == {"questions": 2}
    assert second.first_time("line:evt-1") is False
    assert [t["text"] for t in second.turns()] == ["a"]
    assert second.handoff_for("line:U1") == replace(handoff, thread_channel="C1", thread_ts="1.0")
    assert len(second.feedback()) == 1
    assert [item.text for item in second.learned()] == ["カードがエラーになる"]
    second.close()
    second._keeper.close()


@pytest.mark.redis
@skip_without_redis
def test_redis_prefixes_isolate(redis_url: str, redis_client: redis.Redis) -> None:
    one = RedisStore(redis_url, prefix="one:")
    two = RedisStore(redis_url, prefix="two:")
    one.save("line:U1", {"questions": 1})
    one.first_time("line:evt-1")
    one.open_handoff("line:U1", "line", "U1")

    assert two.load("line:U1") is None
    assert two.first_time("line:evt-1") is True
    assert two.handoff_for("line:U1") is None
    assert all(key.startswith(("one:", "two:")) for key in redis_client.keys("*"))
    one.close()
    two.close()


@pytest.mark.redis
@skip_without_redis
def test_redis_keys_expire(redis_url: str, redis_client: redis.Redis) -> None:
    store = RedisStore(redis_url, prefix="ttl:")
    store.save("line:U1", {"questions": 1})
    store.first_time("line:evt-1")
    store.log_turn(_turn(100.0, "hash-a", "a"))

    conversation_ttl = redis_client.ttl("ttl:conversation:line:U1")
    event_ttl = redis_client.ttl("ttl:event:line:evt-1")

    assert CONVERSATION_TTL_SECONDS - 60 < conversation_ttl <= CONVERSATION_TTL_SECONDS
    assert EVENT_TTL_SECONDS - 60 < event_ttl <= EVENT_TTL_SECONDS
    assert redis_client.ttl("ttl:turns") == -1
    store.close()


def test_delete_prefix_only_matching(store: Store) -> None:
    store.save("line:group:g1:u1", {"n": 1})
    store.save("line:group:g1:u2", {"n": 2})
    store.save("line:group:g10:u1", {"n": 3})
    store.save("line:g_1*", {"n": 4})
    store.delete_prefix("line:group:g1:")
    assert store.load("line:group:g1:u1") is None
    assert store.load("line:group:g1:u2") is None
    assert store.load("line:group:g10:u1") == {"n": 3}
    store.delete_prefix("line:g_1*")
    assert store.load("line:g_1*") is None

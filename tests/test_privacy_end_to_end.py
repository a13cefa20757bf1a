"""No PIN or マイナンバー ever reaches a reply, a log record or the database."""

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.assistant import Assistant
from bot.knowledge import KnowledgeBase
from bot.models import Message
from bot.store import SQLiteStore

TEMPLATES = [
    "暗証番号は{pin}です。{screen}",
    "{screen} PIN {pin} を入れました",
    "マイナンバーは{number}で合ってますか？{screen}",
    "{screen}番号{number}を入力した",
    "署名用パスワードは{password}です",
]
SCREENS = ["暗証番号が間違っております。", "ご利用いただけないカードです。", "", "住民票を取りたい"]


def strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (*strings_in(key), *strings_in(item))]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("privacy") / "state.sqlite3"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    pin=st.integers(0, 9999).map(lambda n: f"{n:04d}"),
    number=st.integers(10**11, 10**12 - 1).map(str),
    separator=st.sampled_from(["", " ", "-"]),
    password=st.from_regex(r"[A-Z]{3}[0-9]{3}[A-Z0-9]{0,6}", fullmatch=True),
    template=st.sampled_from(TEMPLATES),
    screen=st.sampled_from(SCREENS),
)
def test_secrets_never_leak(
    kb: KnowledgeBase,
    database: Path,
    caplog: pytest.LogCaptureFixture,
    pin: str,
    number: str,
    separator: str,
    password: str,
    template: str,
    screen: str,
) -> None:
    grouped = separator.join(number[i : i + 4] for i in range(0, 12, 4))
    text = template.format(pin=pin, number=grouped, password=password, screen=screen)
    secret = {"{pin}": pin, "{number}": number, "{password}": password}
    planted = next(value for key, value in secret.items() if key in template)

    store = SQLiteStore(database)
    assistant = Assistant(kb, store)
    with caplog.at_level(logging.DEBUG):
        reply = assistant.respond(Message(channel="line", user="u", text=text))

    assert reply.redacted
    assert planted not in reply.text.replace(" ", "").replace("-", "")
    assert planted not in caplog.text.replace(" ", "").replace("-", "")
    # Only stored text is searched: timestamps, ids and scores are long digit strings that
    # may contain any 4-digit PIN by chance.
    with sqlite3.connect(database) as db:
        stored = [row[0] for row in db.execute("SELECT text || ' ' || reply FROM turns")]
        for (state,) in db.execute("SELECT state FROM conversations"):
            stored.extend(strings_in(json.loads(state)))
    flat = "\n".join(stored).replace(" ", "").replace("-", "")
    assert planted not in flat

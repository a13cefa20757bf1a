"""The ASGI app over real HTTP on loopback, with a real SQLite file."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.server import create_app
from bot.settings import Settings
from tests.servers import serve


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    settings = Settings(db_path=tmp_path / "state.sqlite3")
    with serve(create_app(settings)) as url:
        yield url


def post(base_url: str, user: str, text: str) -> httpx.Response:
    return httpx.post(f"{base_url}/api/messages", json={"user": user, "text": text}, timeout=30)


def test_healthz(base_url: str) -> None:
    response = httpx.get(f"{base_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_page_is_japanese(base_url: str) -> None:
    response = httpx.get(base_url + "/")
    assert response.status_code == 200
    assert 'lang="ja"' in response.text
    assert "コンビニ交付" in response.text


def test_reply_object_shape(base_url: str) -> None:
    body = post(base_url, "u1", "暗証番号ロック中のため、ご利用いただけません。").json()
    assert set(body) >= {"user", "kind", "error_id", "cause_id", "candidates", "text", "choices"}
    assert body["kind"] == "answer"
    assert body["error_id"] == "9"
    assert body["cause_id"] == "9a"
    assert body["redacted"] is False
    assert all(0 <= c["score"] <= 1 for c in body["candidates"])


def test_choice_label_answers_question(base_url: str) -> None:
    first = post(base_url, "u2", "ご利用いただけないカードです。").json()
    assert first["kind"] == "question"
    assert "住基カード" in first["choices"]
    second = post(base_url, "u2", "住基カード").json()
    assert second["kind"] == "answer"
    assert second["cause_id"] == "1a"


def test_state_survives_restart(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "state.sqlite3")
    with serve(create_app(settings)) as url:
        assert post(url, "u3", "ご利用いただけないカードです。").json()["kind"] == "question"
    with serve(create_app(settings)) as url:
        reply = post(url, "u3", "住基カード").json()
    assert reply["cause_id"] == "1a"


@pytest.mark.parametrize(
    "text",
    ["", "   ", "😀😀😀", "\x00\x01\x1b", "あ" * 40_000, "\ud800住民票"],
    ids=["empty", "spaces", "emoji", "control", "40000", "surrogate"],
)
def test_bad_text_gets_clear_reply(base_url: str, text: str) -> None:
    response = httpx.post(
        f"{base_url}/api/messages",
        content=('{"user": "u4", "text": "' + text.encode("unicode_escape").decode() + '"}')
        if "\ud800" in text
        else None,
        json=None if "\ud800" in text else {"user": "u4", "text": text},
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["text"]
    assert body["kind"] in ("fallback", "question", "notice", "clarify", "answer")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"text": "x"}',
        b'{"user": "", "text": "x"}',
        b'{"user": "u", "text": 5}',
        b"[]",
    ],
    ids=["not-json", "no-user", "empty-user", "text-number", "array"],
)
def test_malformed_request_is_4xx(base_url: str, payload: bytes) -> None:
    response = httpx.post(
        f"{base_url}/api/messages",
        content=payload,
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500


def test_pin_not_stored(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "state.sqlite3"
    with serve(create_app(Settings(db_path=db))) as url:
        body = post(url, "u5", "暗証番号1234を入れたら暗証番号が間違っておりますと出た").json()
    assert body["redacted"] is True
    assert "1234" not in body["text"]
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert "1234" not in dump

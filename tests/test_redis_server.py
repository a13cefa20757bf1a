"""The whole app on a Redis store: two app instances share one conversation."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.server import create_app
from bot.settings import Settings
from tests.conftest import skip_without_redis
from tests.servers import serve

pytestmark = [pytest.mark.redis, skip_without_redis]


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Iterator[Settings]:
    yield Settings(redis_url=redis_url, db_path=tmp_path / "unused.sqlite3")


def test_two_workers_share_state(settings: Settings, redis_client: object) -> None:
    with serve(create_app(settings)) as first, serve(create_app(settings)) as second:
        question = httpx.post(
            f"{first}/api/messages", json={"user": "u", "text": "ご利用いただけないカードです。"}
        ).json()
        answer = httpx.post(
            f"{second}/api/messages", json={"user": "u", "text": "住基カード"}
        ).json()
    assert question["kind"] == "question"
    assert answer["cause_id"] == "1a"
    assert not (settings.db_path).exists()

"""Kiosk photos through the core: identified, or honestly not, and never a wrong answer."""

import json
from pathlib import Path

import pytest

from bot.assistant import Assistant
from bot.models import Message
from tests.conftest import SHARED

IMAGES = SHARED / "eval" / "images"


def expected_images() -> list[tuple[str, str | None]]:
    listing = IMAGES / "expected.json"
    if not listing.exists():
        return []
    return [(item["file"], item["error_id"]) for item in json.loads(listing.read_text())]


@pytest.mark.skipif(not IMAGES.exists(), reason=f"{IMAGES} is missing (the shared folder)")
@pytest.mark.parametrize(("name", "error_id"), expected_images())
def test_photo_identified(assistant: Assistant, name: str, error_id: str | None) -> None:
    image = (IMAGES / name).read_bytes()
    reply = assistant.respond(Message(channel="line", user=name, image=image))
    assert reply.ocr_text
    assert "読み取りました" in reply.text
    if error_id is None:
        assert reply.error_id is None
        assert reply.kind not in ("answer", "question")
    else:
        assert reply.error_id == error_id
        assert reply.kind in ("answer", "question")


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"", "壊れて"),
        (b"just some text, not a picture", "画像として読み取れない"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "壊れて"),
        (b"\xff\xd8\xff" + b"\x00" * (10 * 1024 * 1024), "大きすぎる"),
    ],
    ids=["empty", "text", "broken-png", "too-large"],
)
def test_bad_upload_gets_clear_reply(assistant: Assistant, data: bytes, phrase: str) -> None:
    reply = assistant.respond(Message(channel="web", user="u", image=data))
    assert reply.kind == "fallback"
    assert phrase in reply.text


def test_photo_not_stored(assistant: Assistant, tmp_path: Path) -> None:
    name, _ = expected_images()[0] if expected_images() else ("", None)
    if not name:
        pytest.skip("shared images are missing")
    before = set(tmp_path.rglob("*"))
    assistant.respond(Message(channel="line", user="u", image=(IMAGES / name).read_bytes()))
    assert set(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("ocr_text", "error_id"),
    [
        (
            "証明書交付サービス\nただ今、証明書を印刷しています。\nしばらくお待ちください。\n終了",
            None,
        ),
        ("証明書交付サービス\n暗証番号（数字4桁）を入力してください。\n終了", None),
        ("証明書交付サービス\n料金を投入してください\n300円\n終了", None),
        (
            "14:05 49%\n今日 午後9:43\n証明書交付サービス\n暗証番号ロック中のため、ご利用いた\n"
            "だけません。住民登録をしている市区\n町村にお問合せください。\n終了",
            "9",
        ),
    ],
    ids=["printing", "pin-prompt", "payment", "phone-screenshot"],
)
def test_screen_text_identification(kb: object, ocr_text: str, error_id: str | None) -> None:
    from bot.knowledge import KnowledgeBase
    from bot.match import Matcher
    from bot.phrases import Text
    from bot.screen import identify, without_furniture

    assert isinstance(kb, KnowledgeBase)
    found = identify(Matcher(kb), Text.of(without_furniture(ocr_text)))
    assert found.error_id == error_id


@pytest.mark.skipif(not IMAGES.exists(), reason=f"{IMAGES} is missing (the shared folder)")
def test_large_phone_photo_read(assistant: Assistant) -> None:
    import io

    from PIL import Image

    photo = Image.open(IMAGES / "photo_mild-07.jpg").convert("RGB").resize((6000, 8000))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=60)
    reply = assistant.respond(Message(channel="line", user="big", image=buffer.getvalue()))
    assert reply.error_id == "7"

"""Photo upload of the web simulator (POST /api/images) over real HTTP on loopback."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.server import create_app
from bot.ocr import MAX_IMAGE_BYTES
from bot.settings import Settings
from tests.servers import serve

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTO = SHARED / "eval" / "images" / "photo_mild-07.jpg"
SQLITE_FILES = {"state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"}


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    with serve(create_app(Settings(db_path=tmp_path / "state.sqlite3"))) as url:
        yield url


@pytest.fixture
def photo() -> bytes:
    if not PHOTO.is_file():
        pytest.skip(f"eval photo {PHOTO} is absent")
    return PHOTO.read_bytes()


def upload(base_url: str, data: bytes, user: str = "u1", name: str = "photo.jpg") -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/images",
        data={"user": user},
        files={"file": (name, data, "image/jpeg")},
        timeout=60,
    )


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, dict[str, str]]:
    """Encode (name, filename, value) parts by hand, for bodies httpx would not build."""
    boundary = "madoguchi-test-boundary"
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_photo_upload_answers_error_7(base_url: str, photo: bytes) -> None:
    response = upload(base_url, photo)
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "answer"
    assert body["error_id"] == "7"
    assert body["user"] == "u1"
    assert "暗証番号が間違" in body["ocr_text"]
    assert "暗証番号" in body["text"]


def test_photo_upload_keeps_conversation(base_url: str, photo: bytes) -> None:
    upload(base_url, photo, user="u2")
    reply = httpx.post(
        f"{base_url}/api/messages", json={"user": "u2", "text": "最初から"}, timeout=30
    ).json()
    assert reply["kind"] == "notice"


def test_text_file_gets_fallback_reply(base_url: str) -> None:
    response = upload(base_url, "コンビニで使えませんでした".encode(), name="memo.txt")
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "fallback"
    assert body["error_id"] is None
    assert "画像" in body["text"]


def test_empty_file_gets_fallback_reply(base_url: str) -> None:
    response = upload(base_url, b"")
    assert response.status_code == 200
    assert response.json()["kind"] == "fallback"


def test_truncated_jpeg_gets_fallback_reply(base_url: str, photo: bytes) -> None:
    response = upload(base_url, photo[:200])
    assert response.status_code == 200
    assert response.json()["kind"] == "fallback"


def test_photo_at_size_limit_accepted(base_url: str, photo: bytes) -> None:
    # Bytes after the JPEG end marker are ignored by the decoder, so this is still the photo.
    padded = photo + b"\0" * (MAX_IMAGE_BYTES - len(photo))
    response = upload(base_url, padded)
    assert response.status_code == 200
    assert response.json()["error_id"] == "7"


def test_photo_over_size_limit_is_413(base_url: str) -> None:
    response = upload(base_url, b"\xff\xd8\xff" + b"\0" * MAX_IMAGE_BYTES)
    assert response.status_code == 413


def test_large_declared_length_is_413(base_url: str) -> None:
    body, headers = multipart([("user", None, b"u1"), ("file", "a.jpg", b"\0" * 12_000_000)])
    response = httpx.post(f"{base_url}/api/images", content=body, headers=headers, timeout=60)
    assert response.status_code == 413


def test_chunked_oversized_upload_is_413(base_url: str) -> None:
    body, headers = multipart([("user", None, b"u1"), ("file", "a.jpg", b"\0" * 11_000_000)])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    response = httpx.post(f"{base_url}/api/images", content=chunks(), headers=headers, timeout=60)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413


@pytest.mark.parametrize(
    "parts",
    [
        [("user", None, b"u1")],
        [("file", "a.jpg", b"\xff\xd8\xff")],
        [("user", None, b""), ("file", "a.jpg", b"\xff\xd8\xff")],
        [("user", None, b"u" * 201), ("file", "a.jpg", b"\xff\xd8\xff")],
        [("user", None, b"u1"), ("file", "a.jpg", b"1"), ("file", "b.jpg", b"2")],
        [],
    ],
    ids=["no-file", "no-user", "empty-user", "long-user", "two-files", "no-parts"],
)
def test_incomplete_form_is_422(base_url: str, parts: list[tuple[str, str | None, bytes]]) -> None:
    body, headers = multipart(parts)
    response = httpx.post(f"{base_url}/api/images", content=body, headers=headers, timeout=30)
    assert response.status_code == 422


def test_json_body_is_422(base_url: str) -> None:
    response = httpx.post(f"{base_url}/api/images", json={"user": "u1", "file": "x"}, timeout=30)
    assert response.status_code == 422


def test_malformed_multipart_is_400(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/api/images",
        content=b"this is not multipart",
        headers={"Content-Type": "multipart/form-data; boundary=abc"},
        timeout=30,
    )
    assert response.status_code == 400


def test_photo_never_written_to_disk(
    tmp_path: Path, photo: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[str] = []

    def recording(function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            created.append(function.__name__)
            return function(*args, **kwargs)

        return wrapper

    # A spooled upload rolls over into tempfile.TemporaryFile, which leaves no directory entry.
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, recording(getattr(tempfile, name)))

    # Over 1 MB, where Starlette's UploadFile would move the photo to a temporary file.
    padded = photo + b"\0" * (3 * 1024 * 1024)
    with serve(create_app(Settings(db_path=tmp_path / "state.sqlite3"))) as url:
        response = upload(url, padded)

    assert response.status_code == 200
    assert response.json()["error_id"] == "7"
    assert created == []
    written = {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")}
    assert written <= SQLITE_FILES

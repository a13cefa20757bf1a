"""The web simulator: a chat page and its JSON API, calling the core in-process."""

from __future__ import annotations

import json
import logging
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from bot.models import Message
from bot.ocr import MAX_IMAGE_BYTES

# Far above any real message; the core reads only the first part of long ones anyway.
MAX_TEXT_CHARS = 100_000
MAX_BODY_BYTES = 1_000_000
MAX_USER_CHARS = 200

# Room around the photo in a multipart body for the boundaries, the part headers and the
# user field. A body longer than the photo limit plus this is rejected before it is read.
MAX_FORM_OVERHEAD_BYTES = 64 * 1024
MAX_FIELD_BYTES = 4 * 1024

log = logging.getLogger(__name__)
router = APIRouter()


class MessageIn(BaseModel):
    user: str = Field(min_length=1, max_length=MAX_USER_CHARS)
    text: str = Field(default="", max_length=MAX_TEXT_CHARS)


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return files("adapters.static").joinpath("index.html").read_text(encoding="utf-8")


@router.post("/api/messages")
async def post_message(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, "request body too large")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "request body is not valid JSON") from None
    try:
        incoming = MessageIn.model_validate(_without_surrogates(data))
    except ValidationError as exc:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise HTTPException(422, detail) from None
    message = Message(channel="web", user=incoming.user, text=incoming.text)
    reply = await run_in_threadpool(request.app.state.assistant.respond, message)
    result: dict[str, Any] = reply.as_json()
    return result


@router.post("/api/images")
async def post_image(request: Request) -> dict[str, Any]:
    """Read a kiosk-screen photo sent as multipart/form-data fields `user` and `file`.

    The body is parsed here instead of through FastAPI's UploadFile because Starlette spools
    uploads over 1 MB to a temporary file, and photos must stay in memory. Reading stops as
    soon as the body or the photo passes its limit, so at most MAX_IMAGE_BYTES bytes of the
    photo are held.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES + MAX_FORM_OVERHEAD_BYTES:
        raise _rejected(413, f"the photo is larger than {MAX_IMAGE_BYTES} bytes")

    try:
        form = await _read_image_form(request)
    except HTTPException as exc:
        raise _rejected(exc.status_code, exc.detail) from None
    user = form.fields.get("user")
    missing = [name for name, value in (("user", user), ("file", form.file)) if value is None]
    if missing:
        detail = [{"loc": ["body", name], "msg": "Field required"} for name in missing]
        raise _rejected(422, detail)
    assert user is not None and form.file is not None
    if not 1 <= len(user) <= MAX_USER_CHARS:
        msg = f"user must be 1 to {MAX_USER_CHARS} characters, got {len(user)}"
        raise _rejected(422, [{"loc": ["body", "user"], "msg": msg}])

    message = Message(channel="web", user=user, image=bytes(form.file))
    reply = await run_in_threadpool(request.app.state.assistant.respond, message)
    result: dict[str, Any] = reply.as_json()
    return result


class _ImageForm:
    """Parser callbacks that keep the `file` part's bytes and the small text fields in memory."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.file: bytearray | None = None
        self._name = ""
        self._header_name = b""
        self._header_value = b""
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._name = ""
        self._data = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            _, options = parse_options_header(self._header_value)
            self._name = options.get(b"name", b"").decode("latin-1")
        self._header_name = b""
        self._header_value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        limit = MAX_IMAGE_BYTES if self._name == "file" else MAX_FIELD_BYTES
        if len(self._data) + (end - start) > limit:
            if self._name == "file":
                raise HTTPException(413, f"the photo is larger than {MAX_IMAGE_BYTES} bytes")
            msg = f"the field is longer than {MAX_FIELD_BYTES} bytes"
            raise HTTPException(422, [{"loc": ["body", self._name], "msg": msg}])
        self._data += data[start:end]

    def _part_end(self) -> None:
        if self._name == "file":
            if self.file is not None:
                msg = "more than one file part; send exactly one photo"
                raise HTTPException(422, [{"loc": ["body", "file"], "msg": msg}])
            self.file = self._data
        elif self._name and self._name not in self.fields:
            self.fields[self._name] = self._data.decode("utf-8", "replace")
        self._data = bytearray()


async def _read_image_form(request: Request) -> _ImageForm:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        msg = "Field required: send the photo as multipart/form-data"
        raise HTTPException(422, [{"loc": ["body", "file"], "msg": msg}])

    form = _ImageForm()
    try:
        parser = MultipartParser(options[b"boundary"], form.callbacks())
    except FormParserError as exc:
        raise HTTPException(400, f"invalid multipart boundary: {exc}") from None
    received = 0
    try:
        async for chunk in request.stream():
            # A chunked body has no Content-Length, so its size is checked as it arrives.
            received += len(chunk)
            if received > MAX_IMAGE_BYTES + MAX_FORM_OVERHEAD_BYTES:
                raise HTTPException(413, f"the photo is larger than {MAX_IMAGE_BYTES} bytes")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise HTTPException(400, f"invalid multipart body: {exc}") from None
    return form


def _rejected(status: int, detail: Any) -> HTTPException:
    log.info("image upload rejected status=%d detail=%s", status, detail)
    return HTTPException(status, detail)


def _without_surrogates(value: Any) -> Any:
    # JSON may carry lone surrogates (\ud800); they cannot be encoded, stored or logged.
    if isinstance(value, str):
        return value.encode("utf-8", "ignore").decode("utf-8")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value

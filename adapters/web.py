"""The web simulator: a chat page and its JSON API, calling the core in-process."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from bot.models import Message

# Far above any real message; the core reads only the first part of long ones anyway.
MAX_TEXT_CHARS = 100_000
MAX_BODY_BYTES = 1_000_000

router = APIRouter()


class MessageIn(BaseModel):
    user: str = Field(min_length=1, max_length=200)
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


def _without_surrogates(value: Any) -> Any:
    # JSON may carry lone surrogates (\ud800); they cannot be encoded, stored or logged.
    if isinstance(value, str):
        return value.encode("utf-8", "ignore").decode("utf-8")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value

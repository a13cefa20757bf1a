"""The web simulator: a chat page and its JSON API, calling the core in-process."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from bot.models import Message

# Far above any real message; the core reads only the first part of long ones anyway.
MAX_TEXT_CHARS = 100_000

router = APIRouter()


class MessageIn(BaseModel):
    user: str = Field(min_length=1, max_length=200)
    text: str = Field(default="", max_length=MAX_TEXT_CHARS)


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return files("adapters").joinpath("static/index.html").read_text(encoding="utf-8")


@router.post("/api/messages")
def post_message(body: MessageIn, request: Request) -> dict[str, Any]:
    assistant = request.app.state.assistant
    reply = assistant.respond(Message(channel="web", user=body.user, text=body.text))
    result: dict[str, Any] = reply.as_json()
    return result

"""Channel-neutral message and reply: what adapters hand to the core and get back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Channel = Literal["line", "slack", "web", "cli"]
Kind = Literal["answer", "question", "clarify", "fallback", "notice", "handoff"]
Audience = Literal["resident", "staff"]


@dataclass(frozen=True)
class Message:
    """One incoming message from a person, already stripped of platform details."""

    channel: str
    user: str
    text: str = ""
    image: bytes | None = None
    at: datetime | None = None
    audience: Audience = "resident"


@dataclass(frozen=True)
class Candidate:
    error_id: str
    cause_id: str | None
    score: float

    def as_json(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "cause_id": self.cause_id, "score": round(self.score, 3)}


@dataclass
class Reply:
    """The core's answer; adapters render it as a LINE message, Block Kit or JSON."""

    user: str
    kind: Kind
    text: str
    error_id: str | None = None
    cause_id: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    redacted: bool = False
    ocr_text: str | None = None
    # Sections for staff channels: title, cause, remedy, staff notes, sources.
    sections: dict[str, str] = field(default_factory=dict)
    # The fact the question asks about, so a button press can be tied to it.
    fact_id: str | None = None
    # Set on kind "handoff": the hand-off this reply opened or belongs to.
    handoff_id: str | None = None
    # True while staff handle the conversation: the adapter forwards `relay_text` (redacted)
    # to the staff thread and sends the person nothing.
    relay: bool = False
    relay_text: str = ""
    # On the reply that opens a hand-off: the conversation so far, redacted, oldest first.
    transcript: list[str] = field(default_factory=list)
    # Set when the person ended a hand-off, so the adapter can tell the staff thread.
    closed_handoff_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "user": self.user,
            "kind": self.kind,
            "error_id": self.error_id,
            "cause_id": self.cause_id,
            "candidates": [c.as_json() for c in self.candidates],
            "text": self.text,
            "choices": list(self.choices),
            "redacted": self.redacted,
        }
        if self.ocr_text is not None:
            body["ocr_text"] = self.ocr_text
        if self.handoff_id is not None:
            body["handoff_id"] = self.handoff_id
        return body

"""Scoring of first replies against labelled queries.

Labels in the `expected` column:
- "2" to "11": a kiosk message with a single cause;
- "1a" to "1e", "4a", "4b": a message and its cause;
- "1?", "4?": the message, with its cause not knowable from the text;
- "new:<slug>": a real kiosk problem beyond the city's table;
- "oos": out of scope;
- "?": a vague report without screen text.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from bot.assistant import Assistant
from bot.models import Message, Reply

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEV_QUERIES = SHARED / "eval" / "dev-queries.tsv"
SEED_IDS = {str(n) for n in range(1, 12)}
LABEL = re.compile(r"^(?P<error>\d+)(?P<cause>[a-z?]?)$")


@dataclass(frozen=True)
class Row:
    id: str
    channel: str
    text: str
    expected: str

    @property
    def error_id(self) -> str | None:
        match = LABEL.match(self.expected)
        return match.group("error") if match else None

    @property
    def cause_id(self) -> str | None:
        match = LABEL.match(self.expected)
        if not match:
            return None
        cause = match.group("cause")
        if cause == "?":
            return None
        return f"{match.group('error')}{cause or 'a'}"

    @property
    def in_scope(self) -> bool:
        return self.error_id is not None


@dataclass(frozen=True)
class Outcome:
    row: Row
    reply: Reply

    @property
    def identified(self) -> bool:
        return self.reply.error_id == self.row.error_id and self.reply.kind in (
            "answer",
            "question",
        )

    @property
    def confidently_wrong(self) -> bool:
        reply, row = self.reply, self.row
        seed_remedy = reply.kind == "answer" and reply.error_id in SEED_IDS
        if not row.in_scope:
            return seed_remedy
        if reply.kind != "answer":
            return False
        if reply.error_id != row.error_id:
            return True
        if row.cause_id is None:
            return True  # a cause was picked although the text cannot tell it
        return reply.cause_id != row.cause_id

    @property
    def declined(self) -> bool:
        return self.reply.kind in ("fallback", "notice")


def load_rows(path: Path = DEV_QUERIES) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            Row(
                id=r["id"],
                channel=r["channel"],
                text=r["text"].replace("\\n", "\n"),
                expected=r["expected"].strip(),
            )
            for r in reader
        ]


def first_replies(assistant: Assistant, rows: list[Row]) -> list[Outcome]:
    outcomes = []
    for row in rows:
        channel = "slack" if row.channel == "slack" else "line"
        audience = "staff" if channel == "slack" else "resident"
        message = Message(channel=channel, user=f"eval-{row.id}", text=row.text, audience=audience)
        outcomes.append(Outcome(row, assistant.respond(message)))
    return outcomes

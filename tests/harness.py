"""A conversation driver for tests: push what the person says, pop what the bot replies."""

from __future__ import annotations

from bot.assistant import Assistant
from bot.models import Message, Reply


class Conversation:
    def __init__(self, assistant: Assistant, user: str = "resident", channel: str = "line"):
        self.assistant = assistant
        self.user = user
        self.channel = channel
        self.replies: list[Reply] = []

    def say(self, text: str) -> Reply:
        message = Message(channel=self.channel, user=self.user, text=text)
        reply = self.assistant.respond(message)
        self.replies.append(reply)
        return reply

    def click(self, label: str) -> Reply:
        """Press a choice button: the label must be one the last reply offered."""
        assert self.replies, "nothing to click yet"
        offered = self.replies[-1].choices
        assert label in offered, f"{label!r} not among {offered}"
        return self.say(label)

    @property
    def questions_asked(self) -> int:
        return sum(1 for r in self.replies if r.kind == "question")

"""madoguchi core: channel-independent matching, diagnosis and replies."""

from bot.models import Candidate, Message, Reply

__all__ = ["Candidate", "Message", "Reply"]

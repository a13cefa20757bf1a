"""Phrase look-up in a query: by surface form and by reading, so kana-only input still matches."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.normalize import compact, to_hiragana
from bot.tokenize import reading

# A reading shorter than this matches inside too many unrelated words (e.g. "かい").
MIN_READING_CHARS = 4


@dataclass(frozen=True)
class Text:
    """A query or phrase in the two forms the matcher compares."""

    compact: str
    reading: str

    @classmethod
    def of(cls, raw: str) -> Text:
        form = compact(raw)
        return cls(compact=form, reading=to_hiragana(reading(form)))


# A knowledge-base phrase written as "re:PATTERN" is a regular expression over the compact
# normalized text (full-width digits are already ASCII there), e.g. "re:12月3[01]日".
REGEX_PREFIX = "re:"


@dataclass(frozen=True)
class Phrase:
    raw: str
    compact: str
    reading: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, raw: str) -> Phrase:
        if raw.startswith(REGEX_PREFIX):
            source = raw[len(REGEX_PREFIX) :]
            return cls(raw=raw, compact=source, reading="", pattern=re.compile(source))
        text = Text.of(raw)
        return cls(raw=raw, compact=text.compact, reading=text.reading)

    def found_in(self, text: Text) -> bool:
        if self.pattern is not None:
            return self.pattern.search(text.compact) is not None
        if self.compact and self.compact in text.compact:
            return True
        return len(self.reading) >= MIN_READING_CHARS and self.reading in text.reading


def phrases(raw: tuple[str, ...] | list[str]) -> tuple[Phrase, ...]:
    return tuple(p for p in (Phrase.of(r) for r in raw) if p.compact)


def any_found(candidates: tuple[Phrase, ...], text: Text) -> Phrase | None:
    return next((p for p in candidates if p.found_in(text)), None)

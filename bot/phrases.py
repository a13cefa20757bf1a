"""Phrase look-up in a query, robust to inflection, kana spelling and negation.

A phrase is found by its compact surface form, by its reading (so kana-only input matches),
or by its sequence of lemmas (so 取っちゃった matches 取っちゃいました). A match followed by a
negation (住基カードではない, 取っていません) does not count unless the phrase is itself negated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.normalize import compact, to_hiragana
from bot.tokenize import Token, reading_of, terms_of, tokenize

# A reading shorter than this matches inside too many unrelated words (e.g. "かい").
MIN_READING_CHARS = 4
# Lemmas of a phrase may have at most this many other lemmas between them in the query.
MAX_GAP = 2
NEGATION = "¬"
_NEGATORS = frozenset({"ない", "無い", "ず", "ぬ"})
# Tense, politeness and aspect carry no meaning for matching; てしまう and ちゃう are one.
_IGNORED = frozenset({"た", "だ", "です", "ます", "て", "居る", "てる", "為る", "ござる"})
_ASPECT = {"ちゃう": "しまう", "仕舞う": "しまう", "じゃう": "しまう"}
# Store chains are all "a store" for matching: 別のセブンでも同じ is 別の店でも同じ.
_STORE = "店"
_STORES = frozenset(
    {
        "セブン",
        "セブンイレブン",
        "セブン-イレブン",
        "ローソン",
        "ファミマ",
        "ファミリーマート",
        "ミニストップ",
        "コンビニ",
        "コンビニエンスストア",
        "店舗",
        "イオン",
        "スーパー",
    }
)
_SKIPPED_POS = frozenset({"助詞", "補助記号", "空白", "記号"})
# Text right after a surface match that negates it (ではない, じゃなく, ません, ず).
_NEGATED_AFTER = re.compile(
    r"^(?:い)?(?:ない|なかっ|なく|ません|ず|では?な|じゃな|でな|ではあり|じゃあり)"
)

_PLAIN_ENDING = re.compile(r"(?:た|だ|てる|でる|ている|でいる|ます|ました|てた|でた)$")

# A knowledge-base phrase written as "re:PATTERN" is a regular expression over the compact
# normalized text (full-width digits are already ASCII there), e.g. "re:12月3[01]日".
REGEX_PREFIX = "re:"


def lemmas_of(tokens: list[Token]) -> tuple[str, ...]:
    """Return the meaning-bearing lemmas, with negation as one mark."""
    result: list[str] = []
    for token in tokens:
        if token.pos in _SKIPPED_POS:
            continue
        lemma = token.normalized.lower()
        if lemma in _NEGATORS and token.pos in ("助動詞", "形容詞"):
            result.append(NEGATION)
        elif lemma in _ASPECT:
            result.append(_ASPECT[lemma])
        elif lemma in _STORES or token.surface.lower() in _STORES:
            result.append(_STORE)
        elif lemma not in _IGNORED:
            result.append(lemma)
    return tuple(result)


@dataclass(frozen=True)
class Text:
    """A query in the forms the matcher compares."""

    compact: str
    reading: str
    terms: tuple[str, ...] = ()
    lemmas: tuple[str, ...] = ()

    @classmethod
    def of(cls, raw: str) -> Text:
        form = compact(raw)
        tokens = tokenize(form)
        return cls(
            compact=form,
            reading=to_hiragana(reading_of(tokens)),
            terms=tuple(terms_of(tokens)),
            lemmas=lemmas_of(tokens),
        )


@dataclass(frozen=True)
class Phrase:
    raw: str
    compact: str
    reading: str
    lemmas: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, raw: str) -> Phrase:
        if raw.startswith(REGEX_PREFIX):
            source = raw[len(REGEX_PREFIX) :]
            return cls(raw=raw, compact=source, reading="", pattern=re.compile(source))
        text = Text.of(raw)
        return cls(raw=raw, compact=text.compact, reading=text.reading, lemmas=text.lemmas)

    def found_in(self, text: Text) -> bool:
        if self.pattern is not None:
            return self.pattern.search(text.compact) is not None
        if self.compact and self._surface_in(text.compact):
            return True
        if len(self.reading) >= MIN_READING_CHARS and self._surface_in(text.reading, self.reading):
            return True
        return self._inflects() and self._lemmas_in(text.lemmas)

    def _inflects(self) -> bool:
        # One word is already covered by the surface match, unless the phrase is a verb in a
        # plain tense or aspect form: 割れてる must also match 割れてます. Other endings
        # change the meaning (やり直しても is not やり直した), so they stay surface-only.
        if len(self.lemmas) >= 2:
            return True
        return (
            len(self.lemmas) == 1
            and len(self.lemmas[0]) >= 2
            and self.lemmas[0] != self.compact
            and _PLAIN_ENDING.search(self.compact) is not None
        )

    def _surface_in(self, haystack: str, needle: str | None = None) -> bool:
        needle = needle or self.compact
        negated = NEGATION in self.lemmas
        start = haystack.find(needle)
        while start >= 0:
            end = start + len(needle)
            if negated or not _NEGATED_AFTER.match(haystack[end:]):
                return True
            start = haystack.find(needle, start + 1)
        return False

    def _lemmas_in(self, lemmas: tuple[str, ...]) -> bool:
        wanted = self.lemmas
        for start, lemma in enumerate(lemmas):
            if lemma != wanted[0]:
                continue
            position = start
            for expected in wanted[1:]:
                # A negation must follow its word directly: カード読めない is not カードがない.
                gap = 0 if expected == NEGATION else MAX_GAP
                window = lemmas[position + 1 : position + 2 + gap]
                if expected not in window:
                    break
                position += 1 + window.index(expected)
            else:
                follows_negation = lemmas[position + 1 : position + 2] == (NEGATION,)
                if NEGATION in wanted or not follows_negation:
                    return True
        return False


def phrases(raw: tuple[str, ...] | list[str]) -> tuple[Phrase, ...]:
    return tuple(p for p in (Phrase.of(r) for r in raw) if p.compact)


def any_found(candidates: tuple[Phrase, ...], text: Text) -> Phrase | None:
    return next((p for p in candidates if p.found_in(text)), None)

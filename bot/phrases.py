"""Phrase look-up in a query, robust to inflection, kana spelling and negation.

A phrase is found by its compact surface form, by its reading (so kana-only input matches),
or by its sequence of lemmas (so 取っちゃった matches 取っちゃいました). A match followed by a
negation (住基カードではない, 取っていません) does not count unless the phrase is itself negated.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from bot.normalize import compact, to_hiragana
from bot.tokenize import Token, reading_of, terms_of, tokenize

# A reading shorter than this matches inside too many unrelated words (e.g. "かい").
MIN_READING_CHARS = 4
# Lemmas of a phrase may have at most this many other lemmas between them in the query.
MAX_GAP = 2
NEGATION = "¬"
_NEGATORS = frozenset({"ない", "無い", "ず", "ぬ"})
# Tense, politeness and aspect carry no meaning for matching; てしまう and ちゃう are one.
# する is kept: 何もしないで is not 何もない.
_IGNORED = frozenset({"た", "だ", "です", "ます", "て", "居る", "てる", "ござる"})
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
# Particles that change the meaning: 戸籍だけ取れない is not 戸籍が取れない.
_KEPT_PARTICLES = frozenset({"だけ", "しか", "のみ", "も"})
# Text right after a surface match that negates it (ではない, じゃなく, ません, ず).
_NEGATED_AFTER = re.compile(
    r"^(?:い)?(?:ない|なかっ|なく|ません|ず|では?な|じゃな|でな|ではあり|じゃあり)"
)

# A single verb is matched by lemma only in a state form: 割れてる matches 割れてます, while
# 取れました (it worked) must not match 取れる？ (can I get one?).
_PLAIN_ENDING = re.compile(r"(?:てる|でる|ている|でいる|てます|でます)$")

# A knowledge-base phrase written as "re:PATTERN" is a regular expression over the compact
# normalized text (full-width digits are already ASCII there), e.g. "re:12月3[01]日".
REGEX_PREFIX = "re:"


def lemmas_of(tokens: list[Token]) -> tuple[str, ...]:
    """Return the meaning-bearing lemmas, with negation as one mark."""
    result: list[str] = []
    for token in tokens:
        if token.pos in _SKIPPED_POS and token.normalized not in _KEPT_PARTICLES:
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
    # Look-up keys for PhraseSet: two-character windows of the compact and reading forms.
    surface_keys: frozenset[str] = frozenset()
    reading_keys: frozenset[str] = frozenset()
    tokens: tuple[Token, ...] = ()

    @classmethod
    def of(cls, raw: str) -> Text:
        form = compact(raw)
        tokens = tokenize(form)
        kana = to_hiragana(reading_of(tokens))
        return cls(
            compact=form,
            reading=kana,
            terms=tuple(terms_of(tokens)),
            lemmas=lemmas_of(tokens),
            surface_keys=_windows(form),
            reading_keys=_windows(kana),
            tokens=tuple(tokens),
        )


@dataclass(frozen=True)
class Phrase:
    raw: str
    compact: str
    reading: str
    lemmas: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = field(default=None, compare=False)
    # Whether the lemma sequence is also matched (see _inflects); computed once in of().
    by_lemma: bool = False

    @classmethod
    def of(cls, raw: str) -> Phrase:
        if raw.startswith(REGEX_PREFIX):
            source = raw[len(REGEX_PREFIX) :]
            return cls(raw=raw, compact=source, reading="", pattern=re.compile(source))
        text = Text.of(raw)
        phrase = cls(raw=raw, compact=text.compact, reading=text.reading, lemmas=text.lemmas)
        return replace(phrase, by_lemma=phrase._inflects())

    def found_in(self, text: Text) -> bool:
        if self.pattern is not None:
            return self.pattern.search(text.compact) is not None
        if self.compact and self._surface_in(text.compact):
            return True
        if len(self.reading) >= MIN_READING_CHARS and self._surface_in(text.reading, self.reading):
            return True
        return self.by_lemma and self._lemmas_in(text.lemmas)

    def _inflects(self) -> bool:
        # One word is already covered by the surface match, unless the phrase is a verb in a
        # state form (see _PLAIN_ENDING). Other endings change the meaning (やり直しても is
        # not やり直した), so they stay surface-only.
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
        expected_lemmas = self.lemmas
        for start, lemma in enumerate(lemmas):
            if lemma != expected_lemmas[0]:
                continue
            position = start
            for expected in expected_lemmas[1:]:
                # A negation must follow its word directly: カード読めない is not カードがない.
                gap = 0 if expected == NEGATION else MAX_GAP
                window = lemmas[position + 1 : position + 2 + gap]
                if expected not in window:
                    break
                position += 1 + window.index(expected)
            else:
                follows_negation = lemmas[position + 1 : position + 2] == (NEGATION,)
                if NEGATION in expected_lemmas or not follows_negation:
                    return True
        return False


# PhraseSet keys are a phrase's first KEY_CHARS characters (or all of a shorter phrase).
KEY_CHARS = 3


def _windows(text: str) -> frozenset[str]:
    """Return every substring of 2 to KEY_CHARS characters: the keys a phrase may start with."""
    return frozenset(
        text[i : i + size] for size in range(2, KEY_CHARS + 1) for i in range(len(text) - size + 1)
    )


K = TypeVar("K")


class PhraseSet(Generic[K]):
    """Many phrases, each with a key, indexed so that a query checks only likely candidates.

    A phrase is a candidate when the query contains its first KEY_CHARS characters (by surface
    or reading) or its first lemma. Only candidates run the full Phrase.found_in check.
    """

    def __init__(self, items: Iterable[tuple[K, Phrase]] = ()) -> None:
        self._by_surface: dict[str, list[tuple[K, Phrase]]] = defaultdict(list)
        self._by_reading: dict[str, list[tuple[K, Phrase]]] = defaultdict(list)
        self._by_lemma: dict[str, list[tuple[K, Phrase]]] = defaultdict(list)
        self._always: list[tuple[K, Phrase]] = []
        for item in items:
            self.add(*item)

    def add(self, key: K, phrase: Phrase) -> None:
        item = (key, phrase)
        if phrase.pattern is not None or len(phrase.compact) < 2:
            self._always.append(item)
            return
        self._by_surface[phrase.compact[:KEY_CHARS]].append(item)
        if len(phrase.reading) >= MIN_READING_CHARS:
            self._by_reading[phrase.reading[:KEY_CHARS]].append(item)
        if phrase.lemmas and phrase.by_lemma:
            self._by_lemma[phrase.lemmas[0]].append(item)

    def found(self, text: Text) -> list[tuple[K, Phrase]]:
        """Return every (key, phrase) found in the text, each once, in index order."""
        candidates: dict[int, tuple[K, Phrase]] = {}
        for window in text.surface_keys:
            for item in self._by_surface.get(window, ()):
                candidates[id(item)] = item
        for window in text.reading_keys:
            for item in self._by_reading.get(window, ()):
                candidates[id(item)] = item
        for lemma in set(text.lemmas):
            for item in self._by_lemma.get(lemma, ()):
                candidates[id(item)] = item
        for item in self._always:
            candidates[id(item)] = item
        return [item for item in candidates.values() if item[1].found_in(text)]

    def keys_found(self, text: Text) -> set[K]:
        return {key for key, _ in self.found(text)}


def phrases(raw: tuple[str, ...] | list[str]) -> tuple[Phrase, ...]:
    return tuple(p for p in (Phrase.of(r) for r in raw) if p.compact)

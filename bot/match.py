"""Rank kiosk messages and out-of-scope topics against a query, with the evidence for each score.

Three kinds of evidence are combined for every entry:

* screen: how much of the entry's screen text aligns inside the query (OCR or typed copy);
* keywords: distinctive phrases found in the query, by surface form or by reading;
* similarity: TF-IDF cosine between the query's content words and the entry's examples.

Each is a number in [0, 1]; they are combined as independent evidence (noisy-OR), so one
strong signal is enough and several weak ones add up.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from rapidfuzz import fuzz, process

from bot.knowledge import PLACEHOLDER, KnowledgeBase
from bot.normalize import compact, mask_numbers
from bot.phrases import Phrase, PhraseSet, Text, phrases
from bot.tokenize import content_terms

# Placeholders that the kiosk fills with digits; any other placeholder is a name (a town).
NUMERIC_PLACEHOLDERS = {"月", "日", "時", "分", "番号", "年"}
# A keyword hit is strong evidence but not proof: the word may be used in passing.
KEYWORD_WEIGHT = 0.6
SIMILARITY_WEIGHT = 0.85
# Screen-text alignment of fewer characters than this says little (e.g. "カード").
MIN_ALIGNED_CHARS = 6
# Staff name messages by number ("エラー7", "エラー番号9"); the number is the message id.
ERROR_NUMBER = re.compile(r"(?:エラー|error)(?:番号|no\.?|#)?(\d{1,2})(?!\d)")
NAMED_BY_NUMBER = 0.9
# A query this similar (rapidfuzz ratio) to a phrasing staff registered counts as that entry.
LEARNED_RATIO = 85
LEARNED_SCORE = 0.9

EntryKind = Literal["error", "topic"]


@dataclass(frozen=True)
class Score:
    entry_id: str
    kind: EntryKind
    score: float
    screen: float = 0.0
    keywords: tuple[str, ...] = ()
    similarity: float = 0.0

    @property
    def evidence(self) -> list[str]:
        found = [f"keyword:{k}" for k in self.keywords]
        if self.screen:
            found.append(f"screen:{self.screen:.2f}")
        if self.similarity:
            found.append(f"similar:{self.similarity:.2f}")
        return found


@dataclass
class _Entry:
    id: str
    kind: EntryKind
    patterns: tuple[Pattern, ...]
    keywords: tuple[Phrase, ...]
    vector: dict[str, float] = field(default_factory=dict)
    learned: list[str] = field(default_factory=list)


def screen_pattern(screen_text: str) -> str:
    """Turn a screen text into the compact, number-masked form queries are aligned against."""

    def fill(match: re.Match[str]) -> str:
        return "#" if match.group(0)[1:-1] in NUMERIC_PLACEHOLDERS else ""

    return mask_numbers(compact(PLACEHOLDER.sub(fill, screen_text)))


@dataclass(frozen=True)
class Pattern:
    """A screen text split into sentences, each weighted by how much it tells messages apart.

    Kiosk messages share sentences (「市区町村にお問い合わせください。」), and a shared
    sentence aligning perfectly must not make one message look like another.
    """

    sentences: tuple[str, ...]
    weights: tuple[float, ...]

    def align_scored(self, query: str, ratios: dict[str, float]) -> float:
        """Combine per-sentence partial ratios (0-100) already computed for this query."""
        total = sum(self.weights)
        if not total or len(query) < MIN_ALIGNED_CHARS:
            return 0.0
        found = sum(
            weight * ratios.get(sentence, 0.0) / 100 * min(1.0, len(query) / len(sentence))
            for sentence, weight in zip(self.sentences, self.weights, strict=True)
        )
        return found / total


SHARED_SENTENCE = 90


def _sentences(pattern: str) -> list[str]:
    return [
        part + "。" if not part.endswith("。") else part for part in pattern.split("。") if part
    ]


def build_patterns(screen_texts: dict[str, tuple[str, ...]]) -> dict[str, tuple[Pattern, ...]]:
    """Split every message's screen texts into sentences weighted by length and rarity."""
    split = {
        error_id: [_sentences(screen_pattern(t)) for t in texts]
        for error_id, texts in screen_texts.items()
    }
    every = [(error_id, s) for error_id, variants in split.items() for v in variants for s in v]
    result: dict[str, tuple[Pattern, ...]] = {}
    for error_id, variants in split.items():
        patterns = []
        for sentences in variants:
            weights = []
            for sentence in sentences:
                sharing = {
                    other
                    for other, candidate in every
                    if fuzz.ratio(sentence, candidate) >= SHARED_SENTENCE
                }
                weights.append(len(sentence) / len(sharing | {error_id}))
            patterns.append(Pattern(tuple(sentences), tuple(weights)))
        result[error_id] = tuple(patterns)
    return result


class Matcher:
    """Scores every kiosk message and topic of a knowledge base against a query."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._entries: list[_Entry] = []
        documents: list[Counter[str]] = []
        patterns = build_patterns({e.id: e.screen_texts for e in kb.errors})
        for error in kb.errors:
            self._entries.append(
                _Entry(
                    id=error.id,
                    kind="error",
                    patterns=patterns[error.id],
                    keywords=phrases(
                        (*error.keywords, *(e for c in error.causes for e in c.evidence))
                    ),
                )
            )
            texts = [*error.screen_texts, *error.examples, *error.keywords]
            documents.append(Counter(t for text in texts for t in content_terms(compact(text))))
        for topic in kb.topics:
            self._entries.append(
                _Entry(id=topic.id, kind="topic", patterns=(), keywords=phrases(topic.keywords))
            )
            texts = [topic.title, *topic.examples, *topic.keywords]
            documents.append(Counter(t for text in texts for t in content_terms(compact(text))))
        self._idf = _idf(documents)
        for entry, counts in zip(self._entries, documents, strict=True):
            entry.vector = self._weigh(counts)
        # Inverted index for the cosine: term -> (entry index, weight).
        self._postings: dict[str, list[tuple[int, float]]] = {}
        for index, entry in enumerate(self._entries):
            for term, weight in entry.vector.items():
                self._postings.setdefault(term, []).append((index, weight))
        # Every distinct screen-text sentence, aligned against a query in one batch call.
        self._sentences = sorted(
            {s for e in self._entries for p in e.patterns for s in p.sentences}
        )
        self._keywords: PhraseSet[int] = PhraseSet(
            (index, phrase)
            for index, entry in enumerate(self._entries)
            for phrase in entry.keywords
        )

    def learn(self, entry_id: str, text: str) -> None:
        """Use a phrasing staff registered for an entry from the next query on."""
        entry = next(e for e in self._entries if e.id == entry_id)
        form = mask_numbers(compact(text))
        if form and form not in entry.learned:
            entry.learned.append(form)

    def rank(self, query: Text) -> list[Score]:
        masked = mask_numbers(query.compact)
        vector = self._weigh(Counter(query.terms))
        named = set(ERROR_NUMBER.findall(query.compact))
        hits: dict[int, list[str]] = {}
        for index, phrase in self._keywords.found(query):
            hits.setdefault(index, []).append(phrase.raw)
        ratios: dict[str, float] = {}
        if len(masked) >= MIN_ALIGNED_CHARS:
            for sentence, ratio, _ in process.extract(
                masked, self._sentences, scorer=fuzz.partial_ratio, limit=None
            ):
                ratios[sentence] = ratio
        similarity = [0.0] * len(self._entries)
        for term, weight in vector.items():
            for index, entry_weight in self._postings.get(term, ()):
                similarity[index] += weight * entry_weight
        scores = [
            self._score(entry, tuple(hits.get(index, ())), masked, ratios, similarity[index], named)
            for index, entry in enumerate(self._entries)
        ]
        scores.sort(key=lambda s: s.score, reverse=True)
        return scores

    def _score(
        self,
        entry: _Entry,
        hits: tuple[str, ...],
        masked: str,
        ratios: dict[str, float],
        similarity: float,
        named: set[str],
    ) -> Score:
        screen = max((p.align_scored(masked, ratios) for p in entry.patterns), default=0.0)
        keyword = 1 - (1 - KEYWORD_WEIGHT) ** len(hits)
        combined = 1 - (1 - screen**2) * (1 - keyword) * (1 - SIMILARITY_WEIGHT * similarity)
        if entry.kind == "error" and entry.id in named:
            hits = (*hits, f"エラー{entry.id}")
            combined = max(combined, NAMED_BY_NUMBER)
        if any(fuzz.ratio(masked, example) >= LEARNED_RATIO for example in entry.learned):
            hits = (*hits, "learned")
            combined = max(combined, LEARNED_SCORE)
        return Score(
            entry_id=entry.id,
            kind=entry.kind,
            score=combined,
            screen=screen,
            keywords=hits,
            similarity=similarity,
        )

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        weights = {
            term: (1 + math.log(count)) * self._idf[term]
            for term, count in counts.items()
            if term in self._idf
        }
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items()} if norm else {}


def _idf(documents: list[Counter[str]]) -> dict[str, float]:
    frequency: Counter[str] = Counter()
    for document in documents:
        frequency.update(document.keys())
    total = len(documents)
    return {term: math.log((1 + total) / (1 + df)) + 1 for term, df in frequency.items()}

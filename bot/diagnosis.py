"""Narrow the open causes by facts, and pick the question that splits them best.

A cause stays open while every fact it has a condition on is either unknown or has one of the
allowed values. Among the facts not yet known, the next question is the one with the highest
expected information gain over the open causes, divided by the fact's cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.extractors import EXTRACTORS
from bot.knowledge import Cause, Fact, KnowledgeBase
from bot.phrases import Phrase, PhraseSet, Text, phrases

UNKNOWN = "unknown"
# Below this gain (in bits) a question is not worth the person's time.
MIN_GAIN_BITS = 0.05
EVIDENCE_BOOST = 50.0


@dataclass(frozen=True)
class Open:
    cause: Cause
    error_id: str
    weight: float


def consistent(cause: Cause, facts: Mapping[str, str]) -> bool:
    for fact_id, allowed in cause.conditions.items():
        value = facts.get(fact_id)
        if value is not None and value != UNKNOWN and value not in allowed:
            return False
    return True


def open_causes(
    kb: KnowledgeBase,
    error_weights: Mapping[str, float],
    facts: Mapping[str, str],
    evidence: Iterable[str] = (),
) -> list[Open]:
    """List the causes of the candidate messages that the known facts still allow, best first.

    A cause's weight is its message's weight times its prior times the likelihood of every
    known fact under it (a fact the cause does not constrain is uniform over its values), so
    「戸籍を取ろうとした」 favours the one cause that needs 戸籍. A cause whose own evidence
    phrase was seen counts EVIDENCE_BOOST times more.
    """
    boosted = set(evidence)
    found = []
    for error_id, error_weight in error_weights.items():
        error = kb.error(error_id)
        for cause in error.causes:
            if not consistent(cause, facts):
                continue
            weight = error_weight * cause.prior
            for fact_id, value in facts.items():
                fact = kb.facts.get(fact_id)
                if fact is not None and value != UNKNOWN:
                    weight *= _likelihood(cause, fact_id, value, _value_count(fact))
            if cause.id in boosted:
                weight *= EVIDENCE_BOOST
            found.append(Open(cause=cause, error_id=error_id, weight=weight))
    found.sort(key=lambda o: o.weight, reverse=True)
    return found


def _value_count(fact: Fact) -> int:
    return sum(1 for c in fact.choices if c.value != UNKNOWN)


def _entropy(weights: Iterable[float]) -> float:
    values = [w for w in weights if w > 0]
    total = sum(values)
    return -sum(w / total * math.log2(w / total) for w in values) if total else 0.0


def information_gain(fact: Fact, candidates: list[Open]) -> float:
    values = [c.value for c in fact.choices if c.value != UNKNOWN]
    total = sum(o.weight for o in candidates)
    if total == 0 or not values:
        return 0.0
    before = _entropy(o.weight for o in candidates)
    after = 0.0
    for value in values:
        joint = [
            o.weight / total * _likelihood(o.cause, fact.id, value, len(values)) for o in candidates
        ]
        p_value = sum(joint)
        if p_value > 0:
            after += p_value * _entropy(joint)
    return before - after


def _likelihood(cause: Cause, fact_id: str, value: str, value_count: int) -> float:
    allowed = cause.conditions.get(fact_id)
    if allowed is None:
        return 1.0 / value_count
    return 1.0 / len(allowed) if value in allowed else 0.0


def best_question(
    kb: KnowledgeBase, candidates: list[Open], known: Mapping[str, str]
) -> Fact | None:
    best: tuple[float, Fact] | None = None
    for fact in kb.facts.values():
        if fact.id in known:
            continue
        gain = information_gain(fact, candidates) / fact.cost
        if gain >= MIN_GAIN_BITS and (best is None or gain > best[0]):
            best = (gain, fact)
    return best[1] if best else None


class FactReader:
    """Finds fact values and cause evidence that a free-text message reveals."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb
        # A label such as わからない must not be read as a reply to a question not asked. Free
        # text is therefore read by phrases only, and labels count for the pending question.
        self._choices: PhraseSet[tuple[str, str]] = PhraseSet(
            ((fact.id, choice.value), phrase)
            for fact in kb.facts.values()
            for choice in fact.choices
            for phrase in phrases(choice.phrases)
        )
        self._evidence: PhraseSet[str] = PhraseSet(
            (cause.id, phrase) for cause in kb.causes.values() for phrase in phrases(cause.evidence)
        )

    def facts(self, text: Text, only: str | None = None) -> dict[str, str]:
        """Return fact values named in the text; the longest matching phrase wins a conflict.

        A fact with a built-in extractor takes the extractor's value when it finds one.
        """
        found: dict[str, str] = {}
        for fact in self._kb.facts.values():
            if fact.extractor is None or (only is not None and fact.id != only):
                continue
            value = EXTRACTORS[fact.extractor].read(text.tokens, self._kb.municipality.name)
            if value is not None:
                found[fact.id] = value
        # The longest phrase wins; between equals, the one said first (「1回だけ。3回は…」).
        # A match by spelling beats one by reading alone (さんかい in a text that says 1回
        # and 3回 both).
        best: dict[str, tuple[tuple[bool, int, int], str]] = {}
        for (fact_id, value), phrase in self._choices.found(text):
            if only is not None and fact_id != only:
                continue
            position = text.compact.find(phrase.compact)
            spelled = position >= 0
            rank = (spelled, len(phrase.compact), -(position if spelled else len(text.compact)))
            if fact_id not in best or rank > best[fact_id][0]:
                best[fact_id] = (rank, value)
        for fact_id, (_, value) in best.items():
            found.setdefault(fact_id, value)
        return found

    def learn(self, cause_id: str, text: str) -> None:
        """Treat a phrasing staff registered for a cause as evidence for it."""
        for phrase in phrases([text]):
            self._evidence.add(cause_id, phrase)

    def evidence(self, text: Text) -> list[str]:
        return sorted(self._evidence.keys_found(text))

    def choice_by_label(self, fact_id: str, text: Text) -> str | None:
        fact = self._kb.facts[fact_id]
        for choice in fact.choices:
            if Phrase.of(choice.label).compact == text.compact:
                return choice.value
        return None


def shared_facts(kb: KnowledgeBase, first: str, second: str) -> bool:
    """Tell whether two messages have causes conditioned on a common fact."""

    def facts_of(error_id: str) -> set[str]:
        return {f for c in kb.error(error_id).causes for f in c.conditions}

    return bool(facts_of(first) & facts_of(second))

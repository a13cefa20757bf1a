"""Built-in fact readers that a knowledge-base fact can name with `extractor:`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot import places
from bot.tokenize import Token


@dataclass(frozen=True)
class Extractor:
    # Reads the tokens of a message and the city's name; returns a choice value or None.
    read: Callable[[Sequence[Token], str], str | None]
    # Every value read() can return; each must be a choice of the fact that uses it.
    values: tuple[str, ...]


EXTRACTORS: dict[str, Extractor] = {
    "honseki_vs_residence": Extractor(read=places.relation, values=("same", "different")),
}

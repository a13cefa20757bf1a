"""Tell whether a person's 本籍 and address are in the same municipality, from free text.

Each place name in 「本籍は古賀で住所は福岡市」, 「宗像市に住んでいて、本籍が古賀市」 or
「久留米在住、本籍は実家の古賀」 is tied to the nearest 本籍 or address word, and the two places
are compared.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from bot.tokenize import Token

Relation = Literal["same", "different"]

_HONSEKI = ("本籍",)
_RESIDENCE = ("住所", "住まい", "住む", "在住", "住民票", "現住所", "住民登録")
_SUFFIX = re.compile(r"(都|道|府|県|市|区|町|村)$")
# How many tokens away a place may sit from the word that gives its role.
_REACH = 3


def relation(tokens: Sequence[Token], home: str) -> Relation | None:
    """Return "same" or "different" when tokens of a text name both the 本籍 and the address
    municipality; otherwise None."""
    honseki: set[str] = set()
    residence: set[str] = set()
    for index, token in enumerate(tokens):
        if not _is_place(token, home):
            continue
        if _negated(tokens, index):
            continue  # 「住所は古賀じゃなくて福津市」
        role = _role(tokens, index)
        place = _SUFFIX.sub("", token.surface)
        if role == "honseki":
            honseki.add(place)
        elif role == "residence":
            residence.add(place)
    if honseki and residence:
        return "same" if honseki & residence else "different"
    return None


def _is_place(token: Token, home: str) -> bool:
    if token.subclass == "地名":
        return True
    return token.pos == "名詞" and _SUFFIX.sub("", token.surface) == _SUFFIX.sub("", home)


def _negated(tokens: Sequence[Token], index: int) -> bool:
    following = "".join(t.surface for t in tokens[index + 1 : index + 4])
    return following.startswith(("じゃな", "ではな", "でな", "じゃあな"))


def _role(tokens: Sequence[Token], index: int) -> str | None:
    best: tuple[int, str] | None = None
    low, high = max(0, index - _REACH), min(len(tokens), index + _REACH + 1)
    for position in range(low, high):
        lemma = tokens[position].normalized
        if lemma in _HONSEKI:
            role = "honseki"
        elif lemma in _RESIDENCE:
            role = "residence"
        else:
            continue
        # A marker before the place ("本籍は古賀") wins a tie with one after it.
        distance = abs(position - index) * 2 + (position > index)
        if best is None or distance < best[0]:
            best = (distance, role)
    return best[1] if best else None

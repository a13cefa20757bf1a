"""Morphological analysis with SudachiPy and the core dictionary.

Input is expected to be normalize()d already. The process shares one Dictionary, and each
thread gets its own Tokenizer because SudachiPy 0.7 raises SudachiError ("Tokenizer is
already in use") when two threads call the same one.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import NamedTuple

from sudachipy import Dictionary, Morpheme, SplitMode, Tokenizer
from sudachipy.errors import SudachiError

from bot.normalize import strip_invisible, to_hiragana

logger = logging.getLogger(__name__)

# B keeps document names (住民票, 証明書) whole but splits compounds like 電子証明書.
SPLIT_MODE = SplitMode.B

# SudachiPy 0.7 rejects input of more UTF-8 bytes than this.
MAX_INPUT_BYTES = 49_149

CONTENT_POS = frozenset({"名詞", "動詞", "形容詞", "形状詞", "副詞"})
# Verbs that carry grammar or politeness rather than meaning (しています, ございます,
# ください, いただけません), by normalized form.
STOP_VERBS = frozenset(
    {"為る", "居る", "有る", "成る", "おる", "おく", "御座る", "下さる", "頂く", "致す"}
)
# Sudachi keeps ご利用 as one noun, which then shares no term with 利用.
_HONORIFIC_PREFIX = re.compile("^[ごお御](?=[\u4e00-\u9fff]{2})")
_SYMBOL_POS = frozenset({"補助記号", "空白"})

_dictionary: Dictionary | None = None
_dictionary_lock = threading.Lock()
_local = threading.local()


class Token(NamedTuple):
    """One morpheme, with its forms from the dictionary."""

    surface: str
    normalized: str
    dictionary: str
    reading: str  # hiragana
    pos: str  # first part-of-speech level, such as 名詞
    subclass: str = ""  # third level, such as 地名 for place names


def warm_up() -> None:
    """Load the dictionary now rather than on the first message."""
    _tokenizer()


def tokenize(text: str) -> list[Token]:
    """Split normalized text into tokens, dropping the empty ones Sudachi makes for …, ㏆.

    Text over MAX_INPUT_BYTES is cut at a character boundary. SudachiPy 0.7 also rejects
    text that its own normalization expands past 65,535 bytes (㍻ becomes 平成). Then the
    first half is tried, and again, so the tokens may cover only the start of the text.
    Never raises on any input.
    """
    text = _truncate_utf8(strip_invisible(text), MAX_INPUT_BYTES)
    tokenizer = _tokenizer()
    while text:
        try:
            morphemes = tokenizer.tokenize(text)
        except SudachiError as error:
            logger.warning(
                "Sudachi failed on %d characters, retrying with the first half: %s",
                len(text),
                error,
            )
            text = text[: len(text) // 2]
            continue
        return [_token(morpheme) for morpheme in morphemes if morpheme.surface()]
    return []


def content_terms(text: str) -> list[str]:
    """Return the lowercased normalized forms of nouns, verbs, adjectives and adverbs.

    Particles, auxiliaries, prefixes, suffixes, pronouns, symbols and STOP_VERBS are
    dropped, and an honorific ご or お is cut from a kanji noun. Order and repeats are kept.
    """
    return terms_of(tokenize(text))


def terms_of(tokens: list[Token]) -> list[str]:
    """Return content_terms() of tokens that were already made."""
    return [
        _HONORIFIC_PREFIX.sub("", token.normalized.lower())
        for token in tokens
        if token.pos in CONTENT_POS and token.normalized not in STOP_VERBS
    ]


def reading(text: str) -> str:
    """Return the hiragana reading of the text, so あんしょうばんごう matches 暗証番号.

    Punctuation, symbols and spaces are left out.
    """
    return reading_of(tokenize(text))


def reading_of(tokens: list[Token]) -> str:
    """Return reading() of tokens that were already made."""
    return "".join(token.reading for token in tokens if token.pos not in _SYMBOL_POS)


def _tokenizer() -> Tokenizer:
    tokenizer: Tokenizer | None = getattr(_local, "tokenizer", None)
    if tokenizer is None:
        tokenizer = _load_dictionary().tokenizer(mode=SPLIT_MODE)
        _local.tokenizer = tokenizer
    return tokenizer


def _load_dictionary() -> Dictionary:
    global _dictionary
    with _dictionary_lock:
        if _dictionary is None:
            _dictionary = Dictionary(dict="core")
        return _dictionary


def _token(morpheme: Morpheme) -> Token:
    surface = morpheme.surface()
    tags = morpheme.part_of_speech()
    pos = tags[0]
    # Sudachi reads most symbols as キゴウ, so a symbol's reading is its surface.
    reading_form = morpheme.reading_form()
    kana = surface if pos in _SYMBOL_POS or not reading_form else reading_form
    return Token(
        surface=surface,
        normalized=morpheme.normalized_form(),
        dictionary=morpheme.dictionary_form(),
        reading=to_hiragana(kana),
        pos=pos,
        subclass=tags[2] if len(tags) > 2 else "",
    )


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")

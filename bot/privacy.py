"""Guard against PINs, マイナンバー and 署名用 passwords before anything is matched or stored.

The guard runs on raw text first, so nothing downstream (matcher, logs, database, replies)
ever sees the numbers. It errs towards removing: a 4-digit year next to 暗証番号 is masked too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

MASK = "［削除］"

_DIGIT = r"[0-9０-９]"
_SEP = r"[ 　\-‐－―ー−・.,]?"
# 12 digits, optionally grouped by spaces or hyphens (4-4-4 is how the card prints it).
_MY_NUMBER = re.compile(rf"(?<![0-9０-９]){_DIGIT}(?:{_SEP}{_DIGIT}){{11}}(?![0-9０-９])")
# Four digits, possibly spaced or hyphenated (1 3 5 7, 1-3-5-7), and no more digits after
# them. A number followed by a unit (2024年, 1500円) is a date or amount, not a PIN.
_FOUR_DIGITS = re.compile(
    rf"(?<![0-9０-９]){_DIGIT}(?:{_SEP}{_DIGIT}){{3}}(?!{_SEP}[0-9０-９]|[年円月日時分件回人])"
)
_PIN_CONTEXT = re.compile(
    r"暗証|暗唱|あんしょう|アンショウ|pin|ＰＩＮ|パスワード|ぱすわーど|番号|ばんごう|パスコード",
    re.IGNORECASE,
)
_SIGNATURE_CONTEXT = re.compile(r"署名用|しょめいよう|ショメイヨウ|パスワード|ぱすわーど")
# 署名用 passwords are 6-16 upper-case letters and digits; require at least one digit and one
# letter so that ordinary words near 署名用 are left alone.
_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9Ａ-Ｚａ-ｚ０-９])"
    r"(?=[A-Za-zＡ-Ｚａ-ｚ0-9０-９]*[0-9０-９])(?=[A-Za-zＡ-Ｚａ-ｚ0-9０-９]*[A-Za-zＡ-Ｚａ-ｚ])"
    r"[A-Za-zＡ-Ｚａ-ｚ0-9０-９]{6,16}"
    r"(?![A-Za-z0-9Ａ-Ｚａ-ｚ０-９])"
)
# How far (in characters) a number may sit from the word that makes it a secret.
_NEAR = 12


@dataclass(frozen=True)
class Redaction:
    text: str
    redacted: bool


def redact(text: str) -> Redaction:
    """Replace マイナンバー, PIN-like and password-like strings with a mark."""
    text = _decompose_digits(text)
    found = False

    def mask(_: re.Match[str]) -> str:
        nonlocal found
        found = True
        return MASK

    text = _MY_NUMBER.sub(mask, text)
    # Passwords first: a PIN-like tail (Qwerty7788) must not leave the rest of one behind.
    text = _mask_near(_PASSWORD, _SIGNATURE_CONTEXT, text, mask)
    text = _mask_near(_FOUR_DIGITS, _PIN_CONTEXT, text, mask)
    return Redaction(text=text, redacted=found)


def _decompose_digits(text: str) -> str:
    # Circled and other compatibility digits (①, ⑴) would hide a PIN from the patterns.
    return "".join(
        unicodedata.normalize("NFKC", ch) if unicodedata.category(ch) == "No" else ch for ch in text
    )


def _mask_near(
    pattern: re.Pattern[str],
    context: re.Pattern[str],
    text: str,
    mask: Callable[[re.Match[str]], str],
) -> str:
    contexts = [m.span() for m in context.finditer(text)]
    if not contexts:
        return text
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(text):
        start, end = match.span()
        if any(start - _NEAR <= c_end and c_start <= end + _NEAR for c_start, c_end in contexts):
            pieces.append(text[last:start])
            pieces.append(mask(match))
            last = end
    pieces.append(text[last:])
    return "".join(pieces)

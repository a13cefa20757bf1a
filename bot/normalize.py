"""The one matching form of Japanese text, shared by the knowledge base and every query.

The result is for comparison only: it is never shown to a person or stored in place of the
original. ``normalize`` is idempotent and never raises on any ``str``.
"""

from __future__ import annotations

import re
import sys
import unicodedata


def _ranges_of_categories(categories: set[str]) -> str:
    """Build a regex character class body for every code point in the given categories."""
    parts = []
    start = previous = -2
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) not in categories:
            continue
        if code != previous + 1:
            if start >= 0:
                parts.append((start, previous))
            start = code
        previous = code
    parts.append((start, previous))
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in parts)


# Computed from the running Python's Unicode database, so a newer Python strips newer
# format characters too. Lone surrogates (Cs) cannot be encoded and break Sudachi.
_INVISIBLE = re.compile(
    "[" + _ranges_of_categories({"Cc", "Cf", "Cs"}) + "\ufe00-\ufe0f\U000e0100-\U000e01ef]"
)
_WHITESPACE_CONTROLS = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85]")

# NFKC turns a standalone ゛ into a space plus U+3099, which then never composes.
_VOICING_MARKS = str.maketrans({"゛": "\u3099", "゜": "\u309a", "ﾞ": "\u3099", "ﾟ": "\u309a"})
_COMBINING_VOICING = re.compile("[\u3099\u309a]")

# Radicals that PDF text extraction emits in place of the kanji with the same glyph.
# Kangxi radicals U+2F00-U+2FD5 all fold under NFKC, but these eight fold to traditional
# forms (⼾ to 戶, not 戸), so they map to the everyday kanji here. CJK Radicals Supplement
# U+2E80-U+2EF3 is left alone by NFKC except ⺟ and ⻳. The entries below are the radicals
# drawn as a whole kanji. Component-only shapes such as ⺅ or ⺡ have no kanji to map to.
_RADICALS = str.maketrans(
    {
        # Kangxi Radicals
        "⼾": "戸", "⾭": "青", "⿈": "黄", "⿆": "麦",
        "⿊": "黒", "⿑": "斉", "⿒": "歯", "⿔": "亀",
        # CJK Radicals Supplement
        "⺜": "日", "⺝": "月", "⺟": "母", "⺠": "民", "⺩": "王", "⺬": "示", "⺼": "月",
        "⻁": "虎", "⻄": "西", "⻅": "見", "⻆": "角", "⻇": "角", "⻉": "貝", "⻋": "車",
        "⻑": "長", "⻓": "長", "⻔": "門", "⻘": "青", "⻙": "韋", "⻚": "頁", "⻛": "風",
        "⻜": "飛", "⻝": "食", "⻡": "首", "⻢": "馬", "⻣": "骨", "⻤": "鬼", "⻥": "魚",
        "⻦": "鳥", "⻧": "鹵", "⻨": "麦", "⻩": "黄", "⻪": "黽", "⻫": "斉", "⻬": "斉",
        "⻭": "歯", "⻮": "歯", "⻯": "竜", "⻰": "竜", "⻱": "亀", "⻲": "亀", "⻳": "亀",
    }
)  # fmt: skip

# Applied after NFKC, so fullwidth ～ has already become ASCII ~. Itaiji fold only for
# matching: names like 髙橋 or 渡邉 still reach staff as the person wrote them.
_CHARACTER_FOLDS = str.maketrans(
    {
        "~": "〜", "∼": "〜", "⁓": "〜",
        "髙": "高", "﨑": "崎", "嵜": "崎", "邊": "辺", "邉": "辺", "齋": "斎", "齊": "斎",
        "濱": "浜", "濵": "浜", "𠮷": "吉", "戶": "戸", "靑": "青", "黃": "黄",
        "蕃": "番",  # OCR reads 暗証番号 as 暗証蕃号
    }
)  # fmt: skip

_INQUIRY = re.compile("問合わせ|問い合せ|問合せ")

_WHITESPACE_RUN = re.compile(r"\s+")

_DASHES = "-‐‑‒–—―−─ー"
# Dash look-alikes count as CJK here because they may turn into ー below. That keeps a
# second normalize() from removing a space the first one kept.
_CJK = (
    "\u2e80-\u2fdf\u3001-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0003ffff" + re.escape(_DASHES)
)
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")

# OCR reads 0 as O and 1 as l, I or |. Casefold has already lowered O and I.
_DIGIT_LOOKALIKES = re.compile(r"(?<=[0-9])[oli|]+(?=[0-9])")
_DIGIT_FOR_LOOKALIKE = str.maketrans({"o": "0", "l": "1", "i": "1", "|": "1"})

_LOOKALIKE_RUN = re.compile(f"[口一{re.escape(_DASHES)}]+")
# Kana that cannot start a word, so a 口 right before them must be the katakana ロ.
_NON_INITIAL_KANA = frozenset("ッーンァィゥェォャュョヮ")


def normalize(text: str) -> str:
    """Fold text to the form used to compare knowledge-base entries with queries.

    Invisible characters go first, then voicing marks are composed and radicals mapped
    to kanji before NFKC and casefold. Tildes and variant kanji are folded next.
    Whitespace is collapsed, and dropped between Japanese characters. Last come the
    問い合わせ spellings, OCR digit look-alikes, and the dash, 一 and 口 look-alikes,
    which depend on their neighbours. The order matters for idempotence.
    """
    text = _WHITESPACE_CONTROLS.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    text = text.translate(_VOICING_MARKS).translate(_RADICALS)

    # casefold can leave decomposed sequences (ΐ), so NFKC runs again after it.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    if _COMBINING_VOICING.search(text):
        # A voicing mark on a character with no voiced form (あ゛) is noise.
        text = unicodedata.normalize("NFKC", _COMBINING_VOICING.sub("", text))
    text = text.translate(_CHARACTER_FOLDS)

    text = _WHITESPACE_RUN.sub(" ", text).strip()
    text = _SPACE_BETWEEN_CJK.sub("", text)
    text = _INQUIRY.sub("問い合わせ", text)

    text = _DIGIT_LOOKALIKES.sub(lambda match: match[0].translate(_DIGIT_FOR_LOOKALIKE), text)
    return _LOOKALIKE_RUN.sub(_resolve_lookalike_run, text)


def compact(text: str) -> str:
    """Normalize text and remove every space, for aligning screen text inside a query."""
    return normalize(text).replace(" ", "")


_PLACEHOLDER_X = re.compile(r"(?<![a-z])x+(?![a-z])")
_NUMBER_RUN = re.compile("[0-9〷#]+")


def mask_numbers(text: str) -> str:
    """Replace each run of digits or digit placeholders in normalized text with one ``#``.

    The city's message list writes digits as 〷 or as runs of Ｘ, which normalize() has
    turned into x. A run of x counts only when no other ASCII letter touches it. 〇 is a
    name placeholder (〇〇市), not a digit, so it stays.
    """
    return _NUMBER_RUN.sub("#", _PLACEHOLDER_X.sub("#", text))


_HIRAGANA_FOR_KATAKANA = str.maketrans(
    {code: code - 0x60 for code in [*range(ord("ァ"), ord("ヶ") + 1), ord("ヽ"), ord("ヾ")]}
)


def to_hiragana(text: str) -> str:
    """Convert katakana to hiragana. ー and katakana without a hiragana form (ヷ) stay."""
    return text.translate(_HIRAGANA_FOR_KATAKANA)


def strip_invisible(text: str) -> str:
    """Remove lone surrogates, control and format characters and variation selectors."""
    return _INVISIBLE.sub("", text)


def _is_katakana(char: str) -> bool:
    return "ァ" <= char <= "ヺ" or char == "ー" or "ㇰ" <= char <= "ㇿ"


def _is_ideograph(char: str) -> bool:
    return (
        "\u3400" <= char <= "\u9fff"
        or "\uf900" <= char <= "\ufaff"
        or "\U00020000" <= char <= "\U0003ffff"
        or char == "々"
    )


def _is_ascii_alphanumeric(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _resolve_lookalike(char: str, previous: str, following: str) -> str:
    if char == "口":
        if _is_katakana(previous):
            return "ロ"
        # 窓口サービス keeps its 口: after a kanji, only unmistakable kana make it ロ.
        if _is_katakana(following) and (
            following in _NON_INITIAL_KANA or not _is_ideograph(previous)
        ):
            return "ロ"
        return char
    if char == "一":
        # NOTE: コピ一機 stays unrepaired so that カード一枚 keeps its 一.
        if _is_katakana(previous) and not _is_ideograph(following):
            return "ー"
        return char
    if char not in _DASHES:
        return char
    if _is_katakana(previous):
        return "ー"
    if _is_ascii_alphanumeric(previous) and _is_ascii_alphanumeric(following):
        return "-"
    return char


def _resolve_lookalike_run(match: re.Match[str]) -> str:
    """Rewrite a run of dash, 一 and 口 look-alikes until no rule changes it.

    Each rule only ever turns a character into ロ, ー or -, and a changed character can
    only enable more changes, so the loop ends. Because the result is a fixed point of the
    rules, running normalize() again changes nothing.
    """
    text = match.string
    before = text[match.start() - 1] if match.start() > 0 else ""
    after = text[match.end()] if match.end() < len(text) else ""
    chars = list(match[0])
    last = len(chars) - 1
    changed = True
    while changed:
        changed = False
        for index in [*range(last + 1), *range(last, -1, -1)]:
            previous = chars[index - 1] if index > 0 else before
            following = chars[index + 1] if index < last else after
            resolved = _resolve_lookalike(chars[index], previous, following)
            if resolved != chars[index]:
                chars[index] = resolved
                changed = True
    return "".join(chars)

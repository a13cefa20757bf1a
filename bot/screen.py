"""Identify the kiosk message in text read from a photo of the screen.

OCR text also carries the screen's title bar, buttons, a clock and status lines, so only the
alignment of each message's screen text inside the OCR text counts here, never keywords. A
message is accepted only with a clear score and a clear lead over the runner-up; otherwise
the closest messages are offered, or the person is asked to type what the screen says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.match import Matcher
from bot.normalize import compact
from bot.phrases import Text

# Alignment thresholds for OCR text: accept at ACCEPT with a lead of MARGIN; offer messages
# that reach OFFER. Set from synthetic kiosk photos read by rapidocr 3.10 (PP-OCRv6 small).
ACCEPT = 0.6
MARGIN = 0.15
OFFER = 0.55
MAX_OFFERED = 3


# Lines that are part of the kiosk's or a phone's frame, never of a message: the title bar,
# buttons, a phone gallery's toolbar. Compared in compact form.
FURNITURE = frozenset(
    compact(line)
    for line in (
        "証明書交付サービス",
        "コンビニ交付",
        "行政サービス",
        "終了",
        "终了",
        "戻る",
        "次へ",
        "中止",
        "はい",
        "いいえ",
        "確認",
        "共有",
        "お気に入り",
        "編集",
        "削除",
    )
)
# Clocks, dates, battery and signal indicators of a phone screenshot or the kiosk's status bar.
STATUS_LINE = re.compile(
    r"^(?:(?:今日|昨日|午前|午後|\d{1,4}[年月日/])*\s*\d{1,2}:\d{2}|\d{1,3}%|[\d\s:%/.年月日午前後]+)$"
)


def without_furniture(ocr_text: str) -> str:
    """Drop the lines of OCR text that belong to the screen's frame, keeping message lines."""
    kept = []
    for line in ocr_text.splitlines():
        form = compact(line)
        if not form or form in FURNITURE or STATUS_LINE.match(form):
            continue
        kept.append(line)
    return "\n".join(kept)


@dataclass(frozen=True)
class ScreenMatch:
    error_id: str | None
    # (error id, alignment) of the messages worth offering, best first.
    offered: tuple[tuple[str, float], ...]


def identify(matcher: Matcher, text: Text) -> ScreenMatch:
    aligned = sorted(
        ((s.entry_id, s.screen) for s in matcher.rank(text) if s.kind == "error" and s.screen),
        key=lambda pair: pair[1],
        reverse=True,
    )
    if not aligned:
        return ScreenMatch(error_id=None, offered=())
    best_id, best = aligned[0]
    runner_up = aligned[1][1] if len(aligned) > 1 else 0.0
    if best >= ACCEPT and best - runner_up >= MARGIN:
        return ScreenMatch(error_id=best_id, offered=((best_id, best),))
    offered = tuple(pair for pair in aligned[:MAX_OFFERED] if pair[1] >= OFFER)
    return ScreenMatch(error_id=None, offered=offered)

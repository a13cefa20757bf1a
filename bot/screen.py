"""Identify the kiosk message in text read from a photo of the screen.

OCR text also carries the screen's title bar, buttons, a clock and status lines, so only the
alignment of each message's screen text inside the OCR text counts here, never keywords. A
message is accepted only with a clear score and a clear lead over the runner-up; otherwise
the closest messages are offered, or the person is asked to type what the screen says.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.match import Matcher
from bot.phrases import Text

# Alignment thresholds for OCR text: accept at ACCEPT with a lead of MARGIN; offer messages
# that reach OFFER. Set from synthetic kiosk photos read by rapidocr 3.10 (PP-OCRv6 small).
ACCEPT = 0.6
MARGIN = 0.15
OFFER = 0.55
MAX_OFFERED = 3


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

"""The staff report: conversations per kiosk message and cause, fallbacks, hand-offs, feedback,
and the most frequent questions the bot could not answer, grouped by similarity."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from bot.knowledge import KnowledgeBase
from bot.normalize import compact
from bot.store import Store

# Unanswered questions at least this similar (rapidfuzz ratio of compact forms) are one group.
SIMILAR = 70
TOP_UNANSWERED = 10


@dataclass
class Report:
    since: str
    turns: int = 0
    conversations: int = 0
    by_error: Counter[str] = field(default_factory=Counter)
    by_cause: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    handoffs: int = 0
    handoffs_picked: int = 0
    feedback_resolved: int = 0
    feedback_unresolved: int = 0
    unanswered: list[tuple[str, int]] = field(default_factory=list)


def build(kb: KnowledgeBase, store: Store, since: float, since_label: str) -> Report:
    report = Report(since=since_label)
    turns = store.turns(since)
    report.turns = len(turns)
    report.conversations = len({t["user_hash"] for t in turns})
    for turn in turns:
        report.kinds[turn["kind"]] += 1
        if turn["kind"] in ("answer", "question") and turn["error_id"]:
            report.by_error[turn["error_id"]] += 1
        if turn["kind"] == "answer" and turn["cause_id"]:
            report.by_cause[turn["cause_id"]] += 1
    handoffs = store.handoffs(since)
    report.handoffs = len(handoffs)
    report.handoffs_picked = sum(1 for h in handoffs if h.picked_at is not None)
    for entry in store.feedback(since):
        if entry["resolved"]:
            report.feedback_resolved += 1
        else:
            report.feedback_unresolved += 1
    unanswered = [t["text"] for t in turns if t["kind"] == "fallback" and t["text"].strip()]
    report.unanswered = group_similar(unanswered)[:TOP_UNANSWERED]
    return report


def group_similar(texts: list[str]) -> list[tuple[str, int]]:
    """Group texts whose compact forms are similar; return (example, count), largest first."""
    groups: list[tuple[str, str, int]] = []
    for text in texts:
        form = compact(text)
        for index, (example, key, count) in enumerate(groups):
            if fuzz.ratio(form, key) >= SIMILAR:
                groups[index] = (example, key, count + 1)
                break
        else:
            groups.append((text, form, 1))
    groups.sort(key=lambda g: g[2], reverse=True)
    return [(example, count) for example, _, count in groups]


def render_text(report: Report, kb: KnowledgeBase) -> str:
    lines = [f"madoguchi 利用状況（{report.since}以降）", ""]
    lines.append(f"・やり取り: {report.turns} 件（{report.conversations} 人）")
    lines.append(f"・案内できなかった（対象外など）: {report.kinds['fallback']} 件")
    rated = report.feedback_resolved + report.feedback_unresolved
    rate = f"{report.feedback_resolved / rated:.0%}" if rated else "―"
    lines.append(
        f"・評価: 解決した {report.feedback_resolved} 件、解決しない "
        f"{report.feedback_unresolved} 件（解決率 {rate}）"
    )
    lines.append(
        f"・職員への引き継ぎ: {report.handoffs} 件（対応済み {report.handoffs_picked} 件）"
    )
    lines.append("")
    lines.append("エラーメッセージ別:")
    if not report.by_error:
        lines.append("　（なし）")
    for error_id, count in report.by_error.most_common():
        lines.append(f"　{_error_label(kb, error_id)}: {count} 件")
    lines.append("")
    lines.append("原因別（回答したもの）:")
    if not report.by_cause:
        lines.append("　（なし）")
    for cause_id, count in report.by_cause.most_common():
        summary = kb.causes[cause_id].summary if cause_id in kb.causes else ""
        lines.append(f"　{cause_id} {_shorten(summary, 40)}: {count} 件")
    lines.append("")
    lines.append("よくある、答えられなかった質問（番号は削除済み）:")
    if not report.unanswered:
        lines.append("　（なし）")
    for text, count in report.unanswered:
        lines.append(f"　{count} 件: {_shorten(' '.join(text.split()), 80)}")
    return "\n".join(lines)


def render_csv(report: Report, kb: KnowledgeBase) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["区分", "項目", "件数"])
    writer.writerow(["全体", "やり取り", report.turns])
    writer.writerow(["全体", "利用者数", report.conversations])
    writer.writerow(["全体", "案内できなかった", report.kinds["fallback"]])
    writer.writerow(["評価", "解決した", report.feedback_resolved])
    writer.writerow(["評価", "解決しない", report.feedback_unresolved])
    writer.writerow(["引き継ぎ", "件数", report.handoffs])
    writer.writerow(["引き継ぎ", "対応済み", report.handoffs_picked])
    for error_id, count in report.by_error.most_common():
        writer.writerow(["エラーメッセージ", _error_label(kb, error_id), count])
    for cause_id, count in report.by_cause.most_common():
        writer.writerow(["原因", cause_id, count])
    for text, count in report.unanswered:
        writer.writerow(["答えられなかった質問", " ".join(text.split())[:200], count])
    return out.getvalue()


def _error_label(kb: KnowledgeBase, error_id: str) -> str:
    title = next((e.title for e in kb.errors if e.id == error_id), "")
    return f"エラー{error_id}「{title}」" if error_id.isdigit() else f"{title}（{error_id}）"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Slack text conversion and Block Kit rendering for staff replies.

Inbound: Slack sends message text with its own markup (`<@U…>`, `<#C…|name>`, `<url|label>`)
and with `&`, `<`, `>` written as entities. Outbound: those three characters are the only
control characters of mrkdwn, so they are escaped in every piece of user or knowledge-base
text, which is what keeps a reply from ever pinging `<!channel>` or `<!here>`.
"""

from __future__ import annotations

import re
from typing import Any

from bot.models import Reply

# Block Kit limits. Slack rejects a whole message that breaks any of them.
MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_ACTION_ELEMENTS = 25
MAX_BUTTON_TEXT_CHARS = 75
MAX_BUTTON_VALUE_CHARS = 2000
MAX_BLOCK_ID_CHARS = 255
# Slack also rejects messages whose blocks are too long in total (`msg_blocks_too_long`),
# even when each block is within its limit. That total is not documented; it has been
# reported near 13,000 characters, so this budget is an estimate that stays below it.
MAX_MESSAGE_BLOCK_CHARS = 12_000
# The top-level `text` is what notifications and screen readers use. The blocks carry the
# full answer, so the fallback is cut short.
MAX_FALLBACK_CHARS = 3000

CHOICE_ACTION_PREFIX = "madoguchi_choice_"
CHOICE_BLOCK_PREFIX = "madoguchi_choices"

# Staff-facing wording of the Slack channel.
HEADING_SCREEN = "画面の表示"
HEADING_CAUSE = "原因"
HEADING_REMEDY = "住民への案内"
HEADING_STAFF_NOTES = "職員向けメモ"
HEADING_SOURCES = "出典"
IDS_LINE = "エラー{error_id}・原因{cause_id}"
CHOSEN = "<@{user}> さんが「{label}」を選びました。"
CHOSEN_FALLBACK = "「{label}」を選びました。"
TRUNCATED = "（長いため、ここから先は省略しました。全文は知識ベースで確認してください。）"
DEFAULT_FALLBACK = "madoguchi からの返信です。"
FAILED = "回答の作成中に問題が起きました。お手数ですが、もう一度送ってください。"

_TOKEN = re.compile(r"<([^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,40}$")


# -- inbound ------------------------------------------------------------------------------


def inbound_text(text: str) -> str:
    """Convert Slack message text to the plain text a person typed.

    Mentions of people, user groups and `<!here>`-style commands are dropped, channel links
    become `#name`, links become their label (or the URL). Only then are `&lt;`, `&gt;` and
    `&amp;` decoded, in a single pass, so `&amp;lt;` becomes `&lt;` and never `<`.
    """
    without_tokens = _TOKEN.sub(_resolve_token, text)
    decoded = _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], without_tokens)
    return decoded.strip()


def _resolve_token(match: re.Match[str]) -> str:
    target, _, label = match.group(1).partition("|")
    if target.startswith("@"):
        return ""
    if target.startswith("#"):
        return f"#{label}" if label else ""
    if target.startswith("!"):
        # <!date^…|fallback> and <!subteam^…|@team> carry readable text; <!here> does not.
        return label if target.startswith("!date") else ""
    return label or target


# -- outbound -----------------------------------------------------------------------------


def escape(text: str) -> str:
    """Escape the three mrkdwn control characters, and nothing else (quotes stay as typed)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int) -> dict[str, Any]:
    """Build a plain_text object cut to `limit` characters.

    Slack does not parse plain_text for mentions, and entities would be shown literally, so
    angle brackets become their full-width forms instead of being escaped.
    """
    safe = text.replace("<", "＜").replace(">", "＞")
    return {"type": "plain_text", "text": _cut(safe, limit), "emoji": True}


def render(reply: Reply, conversation: str) -> dict[str, Any]:
    """Render a core reply as `text` plus `blocks` for chat.postMessage or response_url.

    `conversation` identifies the conversation state (channel, thread root and user); it is
    carried in the block_id of the choice buttons, so a click continues that conversation
    even when another staff member clicks.
    """
    builder = _Blocks()
    if reply.kind == "answer" and reply.sections:
        _add_answer(builder, reply)
    else:
        builder.section(_without_choice_list(reply.text, reply.choices))
    if reply.choices:
        builder.buttons(reply.choices, conversation)
    return {"text": fallback_text(reply.text), "blocks": builder.finish()}


def render_failure() -> dict[str, Any]:
    return {"text": FAILED, "blocks": [_section_block(escape(FAILED))]}


def render_chosen(
    question_blocks: list[dict[str, Any]] | None, label: str, user: str
) -> dict[str, Any]:
    """Rebuild a question message after a click: buttons removed, the choice stated."""
    kept = [b for b in question_blocks or [] if b.get("type") != "actions"]
    kept = kept[: MAX_BLOCKS - 1]
    if _USER_ID.match(user):
        line = CHOSEN.format(user=user, label=escape(_cut(label, 200)))
    else:
        line = escape(CHOSEN_FALLBACK.format(label=_cut(label, 200)))
    kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    return {"text": escape(CHOSEN_FALLBACK.format(label=_cut(label, 200))), "blocks": kept}


def fallback_text(text: str) -> str:
    """Escape the reply text for the top-level `text` field, cut to MAX_FALLBACK_CHARS."""
    escaped = escape(text.strip() or DEFAULT_FALLBACK)
    if len(escaped) <= MAX_FALLBACK_CHARS:
        return escaped
    return escaped[: _safe_cut(escaped, MAX_FALLBACK_CHARS - 1)] + "…"


def conversation_of(block_id: str) -> str | None:
    """Return the conversation key carried by a choice block's block_id, if it is one."""
    prefix, sep, rest = block_id.partition("|")
    if not sep or not prefix.startswith(CHOICE_BLOCK_PREFIX) or not rest:
        return None
    return rest


# -- builders -----------------------------------------------------------------------------


def _add_answer(builder: _Blocks, reply: Reply) -> None:
    sections = reply.sections
    title = sections.get("title", "").strip()
    if title:
        builder.header(title)
    screen = sections.get("screen", "").strip()
    if screen:
        builder.section(screen, heading=HEADING_SCREEN, quote=True)
    for key, heading in (
        ("cause", HEADING_CAUSE),
        ("remedy", HEADING_REMEDY),
        ("staff_notes", HEADING_STAFF_NOTES),
        ("sources", HEADING_SOURCES),
    ):
        body = sections.get(key, "").strip()
        if body:
            builder.section(body, heading=heading)
    if reply.error_id and reply.cause_id:
        builder.context(IDS_LINE.format(error_id=reply.error_id, cause_id=reply.cause_id))


class _Blocks:
    """Block list that keeps the whole message inside Slack's limits.

    Text that does not fit is dropped at the end and replaced by one truncation notice.
    Room for the choice buttons and that notice is kept back from the start.
    """

    RESERVED = 4  # two actions blocks, the truncation notice and the ids line

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.chars = 0
        self.truncated = False

    def _room(self, chars: int) -> bool:
        fits_count = len(self.blocks) < MAX_BLOCKS - self.RESERVED
        fits_chars = self.chars + chars <= MAX_MESSAGE_BLOCK_CHARS
        if not (fits_count and fits_chars):
            self.truncated = True
        return not self.truncated

    def header(self, title: str) -> None:
        block = {"type": "header", "text": plain(title, MAX_HEADER_CHARS)}
        if self._room(len(block["text"]["text"])):
            self.blocks.append(block)
            self.chars += len(block["text"]["text"])

    def section(self, text: str, heading: str | None = None, quote: bool = False) -> None:
        lead = f"*{heading}*\n" if heading else ""
        prefix = ">" if quote else ""
        for index, chunk in enumerate(_split_escaped(text, MAX_SECTION_CHARS - len(lead), prefix)):
            mrkdwn = (lead if index == 0 else "") + chunk
            if not self._room(len(mrkdwn)):
                return
            self.blocks.append(_section_block(mrkdwn))
            self.chars += len(mrkdwn)

    def context(self, text: str) -> None:
        line = escape(text)
        if self._room(len(line)):
            self.blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
            self.chars += len(line)

    def buttons(self, labels: list[str], conversation: str) -> None:
        count = min(len(labels), MAX_ACTION_ELEMENTS * 2)
        for start in range(0, count, MAX_ACTION_ELEMENTS):
            group = range(start, min(start + MAX_ACTION_ELEMENTS, count))
            block_id = f"{CHOICE_BLOCK_PREFIX}{start // MAX_ACTION_ELEMENTS}|{conversation}"
            elements = [_button(n, labels[n]) for n in group]
            self.blocks.append(
                {"type": "actions", "block_id": block_id[:MAX_BLOCK_ID_CHARS], "elements": elements}
            )

    def finish(self) -> list[dict[str, Any]]:
        if self.truncated:
            notice = {"type": "context", "elements": [{"type": "mrkdwn", "text": TRUNCATED}]}
            first_actions = next(
                (i for i, b in enumerate(self.blocks) if b["type"] == "actions"), len(self.blocks)
            )
            self.blocks.insert(first_actions, notice)
        if not self.blocks:
            self.blocks.append(_section_block(escape(DEFAULT_FALLBACK)))
        return self.blocks[:MAX_BLOCKS]


def _button(index: int, label: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": f"{CHOICE_ACTION_PREFIX}{index}",
        "text": plain(label, MAX_BUTTON_TEXT_CHARS),
        # Only the label comes back in the click, because the core reads a label as the reply.
        "value": label[:MAX_BUTTON_VALUE_CHARS],
    }


def _section_block(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _without_choice_list(text: str, choices: list[str]) -> str:
    """Drop the trailing `・label` lines, which the buttons show better."""
    if not choices:
        return text
    listed = {f"・{label}" for label in choices}
    lines = text.rstrip().split("\n")
    while lines and lines[-1].strip() in listed:
        lines.pop()
    return "\n".join(lines) if lines else text


def _split_escaped(text: str, limit: int, prefix: str = "") -> list[str]:
    """Escape `text`, put `prefix` before each line, and split it into non-empty pieces.

    Each piece has at most `limit` characters and ends at a line break where possible;
    an entity such as `&amp;` is never cut in two.
    """
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        escaped = prefix + escape(line)
        candidate = f"{current}\n{escaped}" if current else escaped
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        while len(escaped) > limit:
            cut = _safe_cut(escaped, limit)
            pieces.append(escaped[:cut])
            escaped = prefix + escaped[cut:]
        current = escaped
    pieces.append(current)
    return [p for p in pieces if p.strip(prefix + " \n")]


def _safe_cut(escaped: str, limit: int) -> int:
    amp = escaped.rfind("&", max(0, limit - 4), limit)
    if amp != -1 and escaped.find(";", amp) >= limit:
        return amp
    return limit


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

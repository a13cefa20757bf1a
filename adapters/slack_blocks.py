"""Slack text conversion and Block Kit rendering for staff replies.

Inbound: Slack sends message text with its own markup (`<@U…>`, `<#C…|name>`, `<url|label>`)
and with `&`, `<`, `>` written as entities. Outbound: those three characters are the only
control characters of mrkdwn, so they are escaped in every piece of user or knowledge-base
text, which is what keeps a reply from ever pinging `<!channel>` or `<!here>`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bot.knowledge import KnowledgeBase
from bot.models import Reply
from bot.privacy import MASK

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
# A note after a transcript line that names the kind of reply the bot gave.
_BOT_NOTE = re.compile(r"\s*[（(]\s*bot\s*[:：][^（）()]*[）)]\s*$", re.IGNORECASE)


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


def render(reply: Reply, conversation: str, teach_text: str | None = None) -> dict[str, Any]:
    """Render a core reply as `text` plus `blocks` for chat.postMessage or response_url.

    `conversation` identifies the conversation state (channel, thread root and user); it is
    carried in the block_id of the choice buttons, so a click continues that conversation
    even when another staff member clicks. With `teach_text` (the redacted question) the
    message also gets a 「この表現を登録」 button.
    """
    builder = _Blocks()
    if reply.kind == "answer" and reply.sections:
        _add_answer(builder, reply)
    else:
        builder.section(_without_choice_list(reply.text, reply.choices))
    if reply.choices:
        builder.buttons(reply.choices, conversation)
    if teach_text and teach_text.strip():
        builder.blocks.append(
            {"type": "actions", "block_id": TEACH_BLOCK, "elements": [teach_button(teach_text)]}
        )
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
    if reply.ocr_text:
        builder.section(_cut(reply.ocr_text, MAX_OCR_CHARS), heading=HEADING_OCR, quote=True)
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

    RESERVED = 5  # three actions blocks, the truncation notice and the ids line

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


# -- hand-offs to staff -------------------------------------------------------------------

HANDOFF_BLOCK = "madoguchi_handoff"
HANDOFF_STATUS_BLOCK = "madoguchi_handoff_status"
PICK_ACTION = "madoguchi_handoff_pick"
CLOSE_ACTION = "madoguchi_handoff_close"
TEACH_ACTION = "madoguchi_teach"
TEACH_BLOCK = "madoguchi_teach"
TEACH_VIEW = "madoguchi_teach"
TEACH_TEXT_BLOCK = "madoguchi_teach_text"
TEACH_TEXT_ACTION = "text"
TEACH_TARGET_BLOCK = "madoguchi_teach_target"
TEACH_TARGET_ACTION = "target"

# Modal and select limits (Block Kit reference): title and button texts 24, private_metadata
# 3000, plain_text_input 3000, static_select 100 options, option text 75 and value 150.
MAX_VIEW_TITLE_CHARS = 24
MAX_METADATA_CHARS = 3000
MAX_INPUT_CHARS = 3000
MAX_SELECT_OPTIONS = 100
MAX_OPTION_TEXT_CHARS = 75
MAX_OPTION_VALUE_CHARS = 150
# The phrasing carried in the 「この表現を登録」 button value (at most 2000 characters as JSON).
MAX_TEACH_TEXT_CHARS = 1000

HANDOFF_HEADER = "住民からの相談（{channel}）"
HANDOFF_FALLBACK = "住民から職員への相談が届きました（{channel}）。"
HEADING_TRANSCRIPT = "これまでのやり取り（暗証番号などの番号は削除済み）"
NO_TRANSCRIPT = "（madoguchi とのやり取りはありません）"
HEADING_CANDIDATES = "madoguchi の候補"
NO_CANDIDATES = "（候補はありません）"
HEADING_LAST_ANSWER = "直前の案内"
BUTTON_PICK = "対応する"
BUTTON_CLOSE = "対応終了"
BUTTON_TEACH = "この表現を登録"
STATUS_WAITING = (
    "対応待ちです。このスレッドに書いた返信は、住民の LINE に「{prefix}」を付けて届きます"
    "（「//」で始めた返信は届きません）。"
)
# Status lines of a hand-off post. "{who}" becomes a mention in the blocks and 「職員」 in the
# notification text, which Slack shows without resolving mentions.
STATUS_ACTIVE = "{who}が対応しています。"
STATUS_CLOSED_BY_STAFF = "{who}が対応を終了しました。"
STATUS_CLOSED_BY_RESIDENT = "住民が相談を終了しました。"
STATUS_CLOSED_BLOCKED = "住民が LINE でこのアカウントをブロックしたため、相談は終了しました。"
STATUS_TIMED_OUT = (
    "{minutes} 分たっても対応する人がいなかったため、住民に窓口の問い合わせ先を案内しました。"
    "このスレッドに書いた返信は、今からでも住民に届きます。"
)
STATUS_CLOSED = "この相談は終了しました。"
WHO_MENTION = "<@{user}> さん"
WHO_STAFF = "職員"

TEACH_TITLE = "表現を登録"
TEACH_SUBMIT = "登録"
TEACH_CANCEL = "やめる"
TEACH_TEXT_LABEL = "住民の表現（必要なら直してください）"
TEACH_TARGET_LABEL = "どのエラー表示・原因の言い方として登録しますか"
TEACH_TARGET_PLACEHOLDER = "エラー表示か原因を選ぶ"
TEACH_HINT = (
    "登録した表現は、次のメッセージから madoguchi の照合に使われます。"
    "暗証番号やマイナンバーらしき数字は、登録の前に削除されます。"
)
GROUP_ERRORS = "エラー表示"
GROUP_CAUSES = "原因"
TEACH_DONE = "<@{user}> さんが「{text}」を{target}の言い方として登録しました。"
TEACH_MISSING_TEXT = "登録する表現を入れてください。"
TEACH_ONLY_MASK = (
    "削除した番号のほかに文字がありません。住民が書いた言葉を入れてください"
    "（「［削除］」は登録しません）。"
)
TEACH_MISSING_TARGET = "エラー表示か原因を選んでください。"
HEADING_OCR = "写真から読み取った文字"
MAX_OCR_CHARS = 300


def render_handoff(
    handoff_id: str,
    channel: str,
    transcript: list[str],
    candidates: list[str],
    last_answer: str | None,
    phrasing: str | None,
    staff_prefix: str,
) -> dict[str, Any]:
    """Render the staff-channel message that opens a hand-off thread.

    `transcript` and `phrasing` are the resident's redacted words, so they are escaped and
    quoted. The buttons carry the hand-off id, and 「この表現を登録」 carries `phrasing`.
    """
    builder = _Blocks()
    builder.header(HANDOFF_HEADER.format(channel=channel))
    builder.section(
        "\n".join(transcript) if transcript else NO_TRANSCRIPT,
        heading=HEADING_TRANSCRIPT,
        quote=bool(transcript),
    )
    builder.section(
        "\n".join(f"・{c}" for c in candidates) if candidates else NO_CANDIDATES,
        heading=HEADING_CANDIDATES,
    )
    if last_answer:
        builder.section(last_answer, heading=HEADING_LAST_ANSWER)
    blocks = builder.finish()
    blocks.append(_status_block(STATUS_WAITING.format(prefix=escape(staff_prefix))))
    blocks.append(_handoff_actions(handoff_id, picked=False, closed=False, phrasing=phrasing))
    return {"text": escape(HANDOFF_FALLBACK.format(channel=channel)), "blocks": blocks}


@dataclass(frozen=True)
class HandoffStatus:
    """Status of a hand-off post: the sentence it shows and the buttons that still apply.

    `text` is plain text in which "{who}" is replaced by `staff`.
    """

    text: str
    staff: str = ""
    picked: bool = False
    closed: bool = False

    def mrkdwn(self) -> str:
        """Return the escaped sentence with `staff` as a mention (「職員」 for an odd user id)."""
        who = WHO_MENTION.format(user=self.staff) if _USER_ID.match(self.staff) else WHO_STAFF
        return escape(self.text).replace("{who}", who)

    def plain(self) -> str:
        """Return the sentence for the notification text, which names no one."""
        return escape(self.text.replace("{who}", WHO_STAFF))


def status_active(staff: str) -> HandoffStatus:
    return HandoffStatus(STATUS_ACTIVE, staff=staff, picked=True)


def status_closed(text: str = STATUS_CLOSED, staff: str = "") -> HandoffStatus:
    return HandoffStatus(text, staff=staff, picked=True, closed=True)


def status_timed_out(minutes: float) -> HandoffStatus:
    # Still open: staff can take it late, and thread replies still reach the resident.
    return HandoffStatus(STATUS_TIMED_OUT.replace("{minutes}", f"{minutes:g}"))


def render_handoff_status(
    blocks: list[dict[str, Any]] | None, handoff_id: str, status: HandoffStatus
) -> dict[str, Any]:
    """Rebuild a hand-off post with a new status line and the buttons that still apply.

    The other blocks are kept as they were, and so is 「この表現を登録」.
    """
    kept = [
        b
        for b in blocks or []
        if b.get("block_id") not in (HANDOFF_STATUS_BLOCK, HANDOFF_BLOCK)
        and b.get("type") != "actions"
    ][: MAX_BLOCKS - 2]
    phrasing = _phrasing_in(blocks or [])
    kept.append(_status_block(status.mrkdwn()))
    actions = _handoff_actions(
        handoff_id, picked=status.picked, closed=status.closed, phrasing=phrasing
    )
    if actions["elements"]:
        kept.append(actions)
    return {"text": status.plain(), "blocks": kept}


def _status_block(mrkdwn: str) -> dict[str, Any]:
    return {
        "type": "context",
        "block_id": HANDOFF_STATUS_BLOCK,
        "elements": [{"type": "mrkdwn", "text": mrkdwn}],
    }


def _handoff_actions(
    handoff_id: str, picked: bool, closed: bool, phrasing: str | None
) -> dict[str, Any]:
    elements: list[dict[str, Any]] = []
    if not picked and not closed:
        elements.append(_action_button(PICK_ACTION, BUTTON_PICK, handoff_id, style="primary"))
    if not closed:
        elements.append(_action_button(CLOSE_ACTION, BUTTON_CLOSE, handoff_id, style="danger"))
    if phrasing:
        elements.append(teach_button(phrasing))
    return {"type": "actions", "block_id": HANDOFF_BLOCK, "elements": elements}


def _phrasing_in(blocks: list[dict[str, Any]]) -> str | None:
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == TEACH_ACTION:
                return teach_text_of(str(element.get("value") or ""))
    return None


def _action_button(
    action_id: str, label: str, value: str, style: str | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": plain(label, MAX_BUTTON_TEXT_CHARS),
        "value": value[:MAX_BUTTON_VALUE_CHARS],
    }
    if style:
        button["style"] = style
    return button


# -- teach-back ---------------------------------------------------------------------------


def teach_button(phrasing: str) -> dict[str, Any]:
    """Build the 「この表現を登録」 button; its value carries the (redacted) phrasing as JSON."""
    text = phrasing[:MAX_TEACH_TEXT_CHARS]
    value = json.dumps({"t": text}, ensure_ascii=False)
    while len(value) > MAX_BUTTON_VALUE_CHARS:
        # Quotes and control characters grow when JSON escapes them; cut until it fits.
        text = text[: len(text) * 3 // 4]
        value = json.dumps({"t": text}, ensure_ascii=False)
    return _action_button(TEACH_ACTION, BUTTON_TEACH, value)


def clean_phrasing(text: str) -> str:
    """Return the part of a resident's text worth registering as a phrasing.

    Removes the marks left where numbers were deleted and any trailing 「（bot: …）」 notes
    that name the bot's reply, and joins the rest with single spaces. The result may be "".
    """
    text = text.replace(MASK, "")
    while True:
        trimmed = _BOT_NOTE.sub("", text)
        if trimmed == text:
            break
        text = trimmed
    return " ".join(text.split())


def teach_text_of(value: str) -> str | None:
    """Return the phrasing carried by a 「この表現を登録」 button value, if it has one."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    text = data.get("t") if isinstance(data, dict) else None
    return text if isinstance(text, str) and text.strip() else None


def teach_targets(kb: KnowledgeBase) -> list[tuple[str, list[tuple[str, str]]]]:
    """List what a phrasing can be registered for: kiosk messages, then their causes.

    A message with a single cause whose id equals the message id (the slug entries) is listed
    once, under the messages. Each option is (value, label).
    """
    errors = [(e.id, error_label(e.id, e.title)) for e in kb.errors]
    error_ids = {value for value, _ in errors}
    causes = [
        (cause_id, f"{cause_id} {cause.summary}")
        for cause_id, cause in kb.causes.items()
        if cause_id not in error_ids
    ]
    return [(GROUP_ERRORS, errors), (GROUP_CAUSES, causes)]


def error_label(error_id: str, title: str) -> str:
    return f"エラー{error_id}「{title}」" if error_id.isdigit() else title


def render_teach_view(
    phrasing: str, targets: list[tuple[str, list[tuple[str, str]]]], metadata: dict[str, str]
) -> dict[str, Any]:
    """Build the modal that asks which kiosk message or cause a phrasing belongs to."""
    groups = []
    room = MAX_SELECT_OPTIONS
    for label, options in targets:
        chosen = options[:room]
        room -= len(chosen)
        if chosen:
            groups.append(
                {
                    "label": plain(label, MAX_OPTION_TEXT_CHARS),
                    "options": [_option(value, text) for value, text in chosen],
                }
            )
    encoded = json.dumps(metadata, ensure_ascii=False)
    if len(encoded) > MAX_METADATA_CHARS:
        raise ValueError(f"modal metadata is {len(encoded)} characters, the limit is 3000")
    return {
        "type": "modal",
        "callback_id": TEACH_VIEW,
        "private_metadata": encoded,
        "title": plain(TEACH_TITLE, MAX_VIEW_TITLE_CHARS),
        "submit": plain(TEACH_SUBMIT, MAX_VIEW_TITLE_CHARS),
        "close": plain(TEACH_CANCEL, MAX_VIEW_TITLE_CHARS),
        "blocks": [
            {
                "type": "input",
                "block_id": TEACH_TEXT_BLOCK,
                "label": plain(TEACH_TEXT_LABEL, 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": TEACH_TEXT_ACTION,
                    "multiline": True,
                    "max_length": MAX_INPUT_CHARS,
                    "initial_value": phrasing[:MAX_INPUT_CHARS],
                },
            },
            {
                "type": "input",
                "block_id": TEACH_TARGET_BLOCK,
                "label": plain(TEACH_TARGET_LABEL, 2000),
                "element": {
                    "type": "static_select",
                    "action_id": TEACH_TARGET_ACTION,
                    "placeholder": plain(TEACH_TARGET_PLACEHOLDER, 150),
                    "option_groups": groups,
                },
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(TEACH_HINT)}]},
        ],
    }


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": plain(text, MAX_OPTION_TEXT_CHARS), "value": value[:MAX_OPTION_VALUE_CHARS]}


def render_teach_done(user: str, text: str, target: str) -> dict[str, Any]:
    """Confirm a registered phrasing in the thread it came from."""
    quoted = _cut(" ".join(text.split()), 200)
    if _USER_ID.match(user):
        line = TEACH_DONE.format(user=user, text=escape(quoted), target=escape(target))
    else:
        line = escape(
            TEACH_DONE.replace("<@{user}> さん", "職員").format(text=quoted, target=target)
        )
    return {"text": line, "blocks": [_section_block(line)]}


def render_notice(text: str) -> dict[str, Any]:
    """Render one plain sentence from madoguchi (escaped) as a message payload."""
    return {"text": fallback_text(text), "blocks": [_section_block(escape(text.strip()))]}

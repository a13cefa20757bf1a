"""The `madoguchi` command: serve, chat, ask and kb check."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bot.assistant import JAPAN
from bot.knowledge import KnowledgeError, load
from bot.models import Message, Reply
from bot.settings import Settings
from bot.store import MemoryStore, SQLiteStore, Store, open_store

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    handler = args.handler
    result: int = handler(args, settings)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="madoguchi", description="Helpdesk bot for コンビニ交付 kiosk errors."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the web simulator, LINE and Slack webhooks")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8000)")
    serve.set_defaults(handler=_serve)

    chat = commands.add_parser("chat", help="talk to the bot in this terminal")
    chat.add_argument("--db", type=Path, help="SQLite file for conversation state")
    chat.set_defaults(handler=_chat)

    ask = commands.add_parser("ask", help="print the reply to one message, or replay JSON lines")
    ask.add_argument("text", nargs="?", help="the message text")
    ask.add_argument("--jsonl", action="store_true", help="read JSON lines on stdin")
    ask.add_argument("--image", type=Path, help="a photo or screenshot of the kiosk screen")
    ask.add_argument("--json", action="store_true", help="print the reply object as JSON")
    ask.add_argument("--db", type=Path, help="SQLite file to keep state in (default: memory)")
    ask.set_defaults(handler=_ask)

    report = commands.add_parser("report", help="print the usage report in Japanese")
    report.add_argument("--since", help="first day to count, YYYY-MM-DD (default: all)")
    report.add_argument("--csv", action="store_true", help="print CSV instead of text")
    report.add_argument("--slack", action="store_true", help="post it to the staff channel")
    report.add_argument("--db", type=Path, help="SQLite file (default: MADOGUCHI_DB_PATH)")
    report.set_defaults(handler=_report)

    kb = commands.add_parser("kb", help="knowledge-base tools")
    kb_commands = kb.add_subparsers(required=True, metavar="COMMAND")
    check = kb_commands.add_parser("check", help="validate a knowledge folder")
    check.add_argument("directory", nargs="?", type=Path, help="folder (default: knowledge/)")
    check.set_defaults(handler=_kb_check)
    learned = kb_commands.add_parser("learned", help="phrasings staff registered from Slack")
    learned.add_argument("--export", action="store_true", help="print them as YAML")
    learned.add_argument("--db", type=Path, help="SQLite file (default: MADOGUCHI_DB_PATH)")
    learned.set_defaults(handler=_kb_learned)
    return parser


def _assistant(settings: Settings, db: Path | None) -> Any:
    from bot.assistant import Assistant

    kb = _load_or_exit(settings)
    store: Store = SQLiteStore(db) if db else MemoryStore()
    return Assistant(kb, store, settings.conversation_timeout_minutes)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from adapters.server import create_app

    try:
        app = create_app(settings)
    except KnowledgeError as exc:
        _print_problems(exc.problems, sys.stderr)
        return 1
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
    )
    return 0


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    assistant = _assistant(settings, args.db)
    print("madoguchi: コピー機の画面の文言を入力してください（終了: Ctrl-D）")
    choices: list[str] = []
    for line in sys.stdin:
        text = line.strip()
        # A number picks one of the choices shown last, as a button press would.
        if text.isdigit() and 1 <= int(text) <= len(choices):
            text = choices[int(text) - 1]
        reply = assistant.respond(Message(channel="cli", user="terminal", text=text))
        choices = reply.choices
        print(_render_chat(reply), flush=True)
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    assistant = _assistant(settings, args.db)
    if args.jsonl:
        _replay(assistant, sys.stdin, sys.stdout)
        return 0
    if args.image is not None:
        try:
            image = args.image.read_bytes()
        except OSError as exc:
            print(f"画像を読み込めません: {args.image} ({exc.strerror})", file=sys.stderr)
            return 1
        message = Message(channel="cli", user="cli", image=image)
    elif args.text is not None:
        message = Message(channel="cli", user="cli", text=args.text)
    else:
        print("質問の文か --image か --jsonl を指定してください。", file=sys.stderr)
        return 2
    reply = assistant.respond(message)
    if args.json:
        print(json.dumps(reply.as_json(), ensure_ascii=False))
    else:
        print(_render_text(reply))
    return 0


def _replay(assistant: Any, lines: Iterable[str], out: TextIO) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            message = _message_from_line(line)
        except ValueError as exc:
            log.warning("jsonl line %d skipped: %s", number, exc)
            out.write(json.dumps({"line": number, "error": str(exc)}, ensure_ascii=False) + "\n")
            out.flush()
            continue
        reply = assistant.respond(message)
        out.write(json.dumps(reply.as_json(), ensure_ascii=False) + "\n")
        out.flush()


def _message_from_line(line: str) -> Message:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("each line must be a JSON object")
    user = data.get("user")
    channel = data.get("channel", "web")
    if not isinstance(user, str) or not user:
        raise ValueError('"user" must be a non-empty string')
    if channel not in ("line", "slack", "web"):
        raise ValueError('"channel" must be "line", "slack" or "web"')
    at = None
    if data.get("at") is not None:
        try:
            at = datetime.fromisoformat(str(data["at"]))
        except ValueError:
            raise ValueError('"at" must be an ISO 8601 time') from None
    if "image" in data:
        try:
            image = Path(str(data["image"])).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read image: {exc.strerror}") from None
        return Message(channel=channel, user=user, image=image, at=at)
    if "text" not in data:
        raise ValueError('each line needs "text" or "image"')
    text = data["text"]
    if not isinstance(text, str):
        raise ValueError('"text" must be a string')
    if channel == "slack":
        return Message(channel=channel, user=user, text=text, at=at, audience="staff")
    return Message(channel=channel, user=user, text=text, at=at)


def _render_text(reply: Reply) -> str:
    return reply.text


def _render_chat(reply: Reply) -> str:
    if not reply.choices:
        return reply.text
    numbered = "  ".join(f"[{n}] {label}" for n, label in enumerate(reply.choices, start=1))
    return f"{reply.text}\n（番号でも選べます: {numbered}）"


def _kb_check(args: argparse.Namespace, settings: Settings) -> int:
    directory = args.directory or settings.knowledge_dir
    try:
        kb = load(directory)
    except KnowledgeError as exc:
        _print_problems(exc.problems, sys.stdout)
        return 1
    print(
        f"問題はありません: エラーメッセージ {len(kb.errors)} 件、原因 {len(kb.causes)} 件、"
        f"質問 {len(kb.facts)} 件、対象外の話題 {len(kb.topics)} 件。"
    )
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from bot import report

    since, label = 0.0, "記録の最初"
    if args.since:
        try:
            start = datetime.fromisoformat(args.since)
            if start.tzinfo is None:
                # Dates staff type are days in Japan, not in the server's time zone.
                start = start.replace(tzinfo=JAPAN)
        except ValueError:
            print(f"--since は YYYY-MM-DD の形で指定してください: {args.since}", file=sys.stderr)
            return 2
        since, label = start.timestamp(), start.strftime("%Y年%m月%d日")
    kb = _load_or_exit(settings)
    store = SQLiteStore(args.db) if args.db else open_store(settings.db_path, settings.redis_url)
    built = report.build(kb, store, since, label)
    text = report.render_csv(built, kb) if args.csv else report.render_text(built, kb)
    print(text, end="" if args.csv else "\n")
    if args.slack:
        from adapters.slack import post_report

        if not (settings.slack_bot_token and settings.slack_staff_channel):
            print(
                "Slack に送るには SLACK_BOT_TOKEN と MADOGUCHI_SLACK_STAFF_CHANNEL が必要です。",
                file=sys.stderr,
            )
            return 1
        post_report(settings, report.render_text(built, kb))
    return 0


def _kb_learned(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    store = SQLiteStore(args.db) if args.db else open_store(settings.db_path, settings.redis_url)
    grouped: dict[str, list[str]] = {}
    for item in store.learned():
        grouped.setdefault(item.target, []).append(item.text)
    if args.export:
        document = {
            "learned": [{"target": target, "examples": texts} for target, texts in grouped.items()]
        }
        print(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), end="")
    else:
        for target, texts in grouped.items():
            print(f"{target}: {len(texts)} 件")
    return 0


def _load_or_exit(settings: Settings) -> Any:
    try:
        return load(settings.knowledge_dir)
    except KnowledgeError as exc:
        _print_problems(exc.problems, sys.stderr)
        raise SystemExit(1) from None


def _print_problems(problems: list[str], stream: TextIO) -> None:
    print(f"知識ベースに {len(problems)} 件の問題があります。", file=stream)
    for problem in problems:
        print(f"- {problem}", file=stream)


if __name__ == "__main__":
    raise SystemExit(main())

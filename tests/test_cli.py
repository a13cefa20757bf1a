"""The madoguchi command, run as a user would run it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

IMAGE = SHARED / "eval" / "images" / "photo_mild-08.jpg"


def madoguchi(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ask_prints_text() -> None:
    result = madoguchi("ask", "暗証番号ロック中のため、ご利用いただけません。")
    assert result.returncode == 0, result.stderr
    assert "ロック" in result.stdout
    assert "窓口" in result.stdout


def test_ask_without_text_fails_kindly() -> None:
    result = madoguchi("ask")
    assert result.returncode == 2
    assert "指定してください" in result.stderr


def test_jsonl_keeps_each_users_conversation() -> None:
    lines = [
        {"user": "a", "text": "ご利用いただけないカードです。"},
        {"user": "b", "text": "暗証番号ロック中のため、ご利用いただけません。", "channel": "line"},
        {"user": "a", "text": "住基カード"},
        {"user": "c", "text": "今日は寒いですね", "at": "2026-12-04T09:00:00+09:00"},
    ]
    stdin = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n"
    result = madoguchi("ask", "--jsonl", stdin=stdin)
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["user"] for r in replies] == ["a", "b", "a", "c"]
    assert replies[0]["kind"] == "question"
    assert replies[1]["cause_id"] == "9a"
    assert replies[2]["kind"] == "answer"
    assert replies[2]["cause_id"] == "1a"
    assert replies[3]["kind"] == "fallback"
    for reply in replies:
        assert {"kind", "error_id", "cause_id", "candidates", "text", "choices", "redacted"} <= set(
            reply
        )


def test_jsonl_bad_lines_reported_in_order() -> None:
    stdin = '{"user": "a", "text": "こんにちは"}\nnot json\n{"text": "x"}\n[1]\n{"user": "a"}\n'
    result = madoguchi("ask", "--jsonl", stdin=stdin)
    assert result.returncode == 0
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert outputs[0]["kind"] == "notice"
    assert outputs[1] == {"line": 2, "error": outputs[1]["error"]}
    assert "invalid JSON" in outputs[1]["error"]
    assert outputs[2]["line"] == 3
    assert outputs[3]["line"] == 4
    assert outputs[4] == {"line": 5, "error": 'each line needs "text" or "image"'}


def test_jsonl_redacts_my_number() -> None:
    stdin = json.dumps({"user": "a", "text": "マイナンバー 3058 1749 2663 を入れた"}) + "\n"
    result = madoguchi("ask", "--jsonl", stdin=stdin)
    reply = json.loads(result.stdout)
    assert reply["redacted"] is True
    assert "2663" not in result.stdout
    assert "2663" not in result.stderr


def test_jsonl_db_persists(tmp_path: Path) -> None:
    db = str(tmp_path / "replay.sqlite3")
    first = json.dumps({"user": "a", "text": "ご利用いただけないカードです。"}) + "\n"
    madoguchi("ask", "--jsonl", "--db", db, stdin=first)
    second = json.dumps({"user": "a", "text": "住基カード"}) + "\n"
    reply = json.loads(madoguchi("ask", "--jsonl", "--db", db, stdin=second).stdout)
    assert reply["cause_id"] == "1a"


@pytest.mark.skipif(not IMAGE.exists(), reason=f"{IMAGE} is missing (the shared folder)")
def test_image_line_and_flag() -> None:
    stdin = json.dumps({"user": "a", "image": str(IMAGE)}) + "\n"
    reply = json.loads(madoguchi("ask", "--jsonl", stdin=stdin).stdout)
    assert reply["error_id"] == "8"
    assert reply["ocr_text"]
    flag = madoguchi("ask", "--image", str(IMAGE), "--json")
    assert json.loads(flag.stdout)["error_id"] == "8"


def test_image_missing_file(tmp_path: Path) -> None:
    result = madoguchi("ask", "--image", str(tmp_path / "none.jpg"))
    assert result.returncode == 1
    assert "画像を読み込めません" in result.stderr


def test_chat_conversation() -> None:
    result = madoguchi("chat", stdin="ご利用いただけないカードです。\n2\n")
    assert result.returncode == 0, result.stderr
    assert "機械に置いたカード" in result.stdout
    assert "[2] 住基カード" in result.stdout
    assert "マイナンバーカードだけ" in result.stdout


def test_report_and_learned_export(tmp_path: Path) -> None:
    db = str(tmp_path / "report.sqlite3")
    stdin = "\n".join(
        json.dumps(line, ensure_ascii=False)
        for line in [
            {"user": "a", "text": "暗証番号ロック中のため、ご利用いただけません。"},
            {"user": "a", "text": "解決した"},
            {"user": "b", "text": "犬の登録はどこ"},
        ]
    )
    madoguchi("ask", "--jsonl", "--db", db, stdin=stdin + "\n")
    text = madoguchi("report", "--db", db)
    assert text.returncode == 0, text.stderr
    assert "エラー9" in text.stdout
    assert "解決した 1 件" in text.stdout
    assert "犬の登録" in text.stdout
    table = madoguchi("report", "--db", db, "--csv", "--since", "2020-01-01")
    assert "区分,項目,件数" in table.stdout
    assert madoguchi("report", "--db", db, "--since", "yesterday").returncode == 2
    export = madoguchi("kb", "learned", "--export", "--db", db)
    assert export.returncode == 0
    assert "learned" in export.stdout

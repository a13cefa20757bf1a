"""Diagnosis conversations, written as transcripts."""

import pytest

from bot.assistant import Assistant
from bot.knowledge import KnowledgeBase
from bot.store import MemoryStore
from tests.harness import Conversation

CARD_MESSAGE = "ご利用いただけないカードです。市区町村にお問合せください。"
TARGET_MESSAGE = "指定した証明書を交付できません。市区町村にお問合せください。"


@pytest.fixture
def talk(assistant: Assistant) -> Conversation:
    return Conversation(assistant)


def test_card_message_asks_first(talk: Conversation) -> None:
    reply = talk.say(CARD_MESSAGE)
    assert reply.kind == "question"
    assert reply.error_id == "1"
    assert reply.cause_id is None
    assert 2 <= len(reply.choices) <= 13


def test_juki_card_by_button(talk: Conversation) -> None:
    talk.say(CARD_MESSAGE)
    reply = talk.click("住基カード")
    assert reply.kind == "answer"
    assert reply.cause_id == "1a"


@pytest.mark.parametrize(
    ("answers", "cause"),
    [
        (["住基カードでした"], "1a"),
        (["いいえ、マイナンバーカードです", "暗証番号を入れる前にカードを取っちゃいました"], "1b"),
        (["マイナンバーカードです", "電子証明書の期限が去年で切れてました"], "1c"),
        (["マイナンバーカード", "別のコンビニでは取れました"], "1d"),
        (["マイナンバーカードです", "本籍は古賀で住所は福岡市です。戸籍を取ろうとしました"], "1e"),
    ],
    ids=["1a", "1b", "1c", "1d", "1e"],
)
def test_card_message_free_text(talk: Conversation, answers: list[str], cause: str) -> None:
    talk.say(CARD_MESSAGE)
    reply = talk.replies[-1]
    for answer in answers:
        if reply.kind != "question":
            break
        reply = talk.say(answer)
    assert reply.kind == "answer", reply.text
    assert reply.cause_id == cause
    assert talk.questions_asked <= 2


def test_first_message_with_evidence_answers(talk: Conversation) -> None:
    reply = talk.say("住基カードを置いたら『ご利用いただけないカードです』と出ました")
    assert reply.kind == "answer"
    assert reply.cause_id == "1a"


@pytest.mark.parametrize(
    ("answers", "cause"),
    [
        (["家族全員の分を選んだら出ました。世帯の中に転出届を出した人がいます"], "4a"),
        (["まだやり直していません"], "4b"),
    ],
    ids=["4a", "4b"],
)
def test_target_message(talk: Conversation, answers: list[str], cause: str) -> None:
    reply = talk.say(TARGET_MESSAGE)
    assert reply.kind == "question"
    assert reply.error_id == "4"
    for answer in answers:
        reply = talk.say(answer)
        if reply.kind == "answer":
            break
    assert reply.kind == "answer"
    assert reply.cause_id == cause


@pytest.mark.parametrize(
    ("answers", "error_id"),
    [
        (["1回だけです"], "7"),
        (["3回です", "3回目を入れた直後に出ました"], "8"),
        (["3回以上です", "入力する前からロックと出ていました"], "9"),
    ],
    ids=["once", "three-times", "locked-at-start"],
)
def test_pin_split(talk: Conversation, answers: list[str], error_id: str) -> None:
    reply = talk.say("暗証番号を間違えたみたいです")
    assert reply.kind == "question"
    assert reply.error_id is None
    for answer in answers:
        reply = talk.say(answer)
        if reply.kind == "answer":
            break
    assert reply.kind == "answer"
    assert reply.error_id == error_id
    assert talk.questions_asked <= 2


def test_new_screen_text_restarts(talk: Conversation) -> None:
    assert talk.say(CARD_MESSAGE).kind == "question"
    reply = talk.say("暗証番号ロック中のため、ご利用いただけません。")
    assert reply.kind == "answer"
    assert reply.error_id == "9"


def test_reset_in_middle(talk: Conversation) -> None:
    talk.say(CARD_MESSAGE)
    reply = talk.say("最初から")
    assert reply.kind == "notice"
    reply = talk.say("住基カード")
    assert reply.kind != "question" or reply.error_id != "1" or reply.fact_id is None


def test_unclear_answer_reasked(talk: Conversation) -> None:
    first = talk.say(CARD_MESSAGE)
    reply = talk.say("😀")
    assert reply.kind == "question"
    assert reply.fact_id == first.fact_id
    reply = talk.say("")
    assert reply.kind == "question"
    assert reply.choices == first.choices


def test_long_message_in_conversation(talk: Conversation) -> None:
    talk.say(CARD_MESSAGE)
    reply = talk.say("あ" * 40_000)
    assert reply.kind in ("question", "fallback", "clarify")
    assert talk.say("住基カード").cause_id == "1a"


def test_expired_question(kb: KnowledgeBase) -> None:
    now = [1_000_000.0]
    assistant = Assistant(kb, MemoryStore(), timeout_minutes=30, clock=lambda: now[0])
    talk = Conversation(assistant)
    talk.say(CARD_MESSAGE)
    now[0] += 31 * 60
    reply = talk.say("住基カード")
    assert "最初から" in reply.text or reply.kind == "answer"


def test_state_kept_per_user(assistant: Assistant) -> None:
    first = Conversation(assistant, user="a")
    second = Conversation(assistant, user="b")
    first.say(CARD_MESSAGE)
    second.say("暗証番号ロック中のため、ご利用いただけません。")
    assert first.say("住基カード").cause_id == "1a"


def test_pin_warning_once(talk: Conversation) -> None:
    reply = talk.say("暗証番号1234を入れたら暗証番号が間違っておりますと出ました")
    assert reply.redacted
    assert "1234" not in reply.text
    assert "送らないでください" in reply.text
    again = talk.say("暗証番号は5678かも")
    assert again.redacted
    assert "送らないでください" not in again.text


def test_bare_yes_answers_question(talk: Conversation) -> None:
    reply = talk.say(TARGET_MESSAGE)
    assert reply.fact_id == "retry_result"
    reply = talk.say("うん")
    assert reply.kind == "answer"
    assert reply.cause_id == "4a"


def test_bare_no_answers_question(talk: Conversation) -> None:
    talk.say(TARGET_MESSAGE)
    reply = talk.say("いいえ違います")
    assert reply.kind == "answer"
    assert reply.cause_id == "4b"


def test_place_sentence_answers_question(talk: Conversation) -> None:
    talk.say("戸籍を取ろうとしたら、ご利用いただけないカードですと出ました")
    reply = talk.say("マイナンバーカードです")
    if reply.kind == "question":
        reply = talk.say("本籍は古賀で住所は福岡市です")
    assert reply.kind == "answer"
    assert reply.cause_id == "1e"


def test_staff_answer_has_sections(assistant: Assistant) -> None:
    from bot.models import Message

    reply = assistant.respond(
        Message(
            channel="slack",
            user="staff",
            text="住民から『暗証番号ロック中』と出たと電話",
            audience="staff",
        )
    )
    assert reply.kind == "answer"
    assert reply.sections["staff_notes"]
    assert reply.sections["sources"]
    assert reply.choices == []


def test_answer_offers_feedback(talk: Conversation) -> None:
    reply = talk.say("暗証番号ロック中のため、ご利用いただけません。")
    assert reply.choices == ["解決した", "解決しない"]
    reply = talk.click("解決しない")
    assert "職員に相談" in reply.choices
    reply = talk.click("職員に相談")
    assert reply.kind == "handoff"
    assert reply.handoff_id
    assert any(line.startswith("住民:") and "ロック中" in line for line in reply.transcript)
    assert any(line.startswith("ボット:") for line in reply.transcript)


def test_handoff_relays_then_ends(talk: Conversation) -> None:
    opened = talk.say("職員と話したいです")
    assert opened.kind == "handoff"
    relayed = talk.say("暗証番号を忘れました")
    assert relayed.relay
    assert relayed.text == ""
    assert relayed.relay_text == "暗証番号を忘れました"
    ended = talk.say("終了")
    assert ended.kind == "notice"
    assert ended.closed_handoff_id == opened.handoff_id
    assert talk.say("暗証番号ロック中のため、ご利用いただけません。").kind == "answer"


def test_two_fallbacks_offer_person(talk: Conversation) -> None:
    first = talk.say("今日はいい天気ですね")
    assert first.kind == "fallback"
    assert "職員に相談" not in first.choices
    second = talk.say("明日は雨かな")
    assert second.kind == "fallback"
    assert "職員に相談" in second.choices


def test_learned_phrasing_used_at_once(assistant: Assistant) -> None:
    talk = Conversation(assistant, user="before")
    phrasing = "画面が真っ赤になって先に進めないんだけど"
    assert talk.say(phrasing).error_id != "3"
    assistant.learn("3", phrasing, staff="U123")
    after = Conversation(assistant, user="after")
    assert after.say("画面が真っ赤になって先へ進めないんだけど").error_id == "3"


@pytest.mark.parametrize(
    ("at", "phrase"),
    [("2026-12-05T02:10:00+09:00", "利用時間外"), ("2026-12-05T07:00:00+09:00", "利用時間内")],
    ids=["night", "morning"],
)
def test_hours_answer_uses_message_time(assistant: Assistant, at: str, phrase: str) -> None:
    from datetime import datetime

    from bot.models import Message

    message = Message(
        channel="line",
        user="hours",
        text="サービス提供時間外のため、現在ご利用いただけません。",
        at=datetime.fromisoformat(at),
    )
    reply = assistant.respond(message)
    assert reply.error_id == "10"
    assert phrase in reply.text


def test_staff_get_staff_question(assistant: Assistant) -> None:
    from bot.models import Message

    reply = assistant.respond(
        Message(channel="slack", user="staff-q", text=CARD_MESSAGE, audience="staff")
    )
    assert reply.kind == "question"
    assert "確認してください" in reply.text


def test_repeated_feedback_tap(talk: Conversation) -> None:
    talk.say("暗証番号ロック中のため、ご利用いただけません。")
    first = talk.say("解決しない")
    second = talk.say("解決しない")
    assert first.kind == "notice"
    assert second.kind == "notice"
    assert second.choices == first.choices


def test_fact_after_listed_causes_settles(talk: Conversation) -> None:
    talk.say(CARD_MESSAGE)
    talk.say("マイナンバーカード")
    listed = talk.say("特にない")
    assert listed.kind == "answer"
    assert "絞りきれません" in listed.text
    settled = talk.say("ほかの店でもダメでした。カードの角が割れてます")
    assert settled.kind == "answer"
    assert settled.cause_id == "1d"
    assert "絞りきれません" not in settled.text

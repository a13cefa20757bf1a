"""The kiosk messages exactly as the city's PDF table renders them: radicals (⼾ ⺠), line
breaks at the table's column width, and placeholders (〇〇, ＸＸ, 〷) left unfilled."""

import pytest

from bot.assistant import Assistant
from bot.models import Message

PDF_SCREENS = {
    "1": "ご利用いただけないカードです。市区町村\nにお問合せください。",
    "2": "〇〇県〇〇市はＸＸ月ＸＸ日午後ＸＸ：Ｘ\nＸまでメンテナンス中のため、サービスを\n"
    "ご利用いただけません。市区町村にお問い\n合わせください。",
    "3": "ただ今、込み合っております。時間をおい\nて再度お試しください。解消しない場合は\n"
    "店員にご連絡ください。（証明書交付サー\nビスＸ）",
    "4": "指定した証明書を交付できません。市区町\n村にお問合せください。",
    "5": "交付可能な証明書がありません。住⺠登録\nをしている市区町村にお問合せください。",
    "6": "一定時間操作が行われなかったため処理を\n終了します。",
    "7": "暗証番号が間違っております。",
    "8": "暗証番号を３回連続で間違いました。",
    "9": "暗証番号ロック中のため、ご利用いただけ\nません。住⺠登録をしている市区町村にお\n"
    "問合せください。",
    "10": "サービス提供時間外のため、現在ご利用い\nただけません。",
    "11": "あなたの利用者証明用電子証明書の有効期\n限は〷月〷日です。期限までに、住⺠登録\n"
    "している市区町村で更新手続きをしてくだ\nさい。",
}
MULTI_CAUSE = {"1", "4"}


@pytest.mark.parametrize(("error_id", "screen"), PDF_SCREENS.items(), ids=PDF_SCREENS.keys())
@pytest.mark.parametrize("layout", ["as-printed", "joined", "spaced"])
def test_pdf_screen_identified(
    assistant: Assistant, error_id: str, screen: str, layout: str
) -> None:
    text = {
        "as-printed": screen,
        "joined": screen.replace("\n", ""),
        "spaced": screen.replace("\n", " "),
    }[layout]
    reply = assistant.respond(Message(channel="line", user=f"{error_id}-{layout}", text=text))
    assert reply.error_id == error_id
    if error_id in MULTI_CAUSE:
        assert reply.kind == "question"
        assert reply.cause_id is None
    else:
        assert reply.kind == "answer"
        assert reply.cause_id == f"{error_id}a"

"""Every sentence the bot itself says to a person, in one place so staff can review the tone.

Knowledge-base text (causes, remedies, questions) lives in knowledge/; these templates only
frame it.
"""

from __future__ import annotations

from datetime import datetime, time

from bot.knowledge import Cause, KioskError, Municipality

NONE_OF_THESE = "どれでもない"
RESET_LABEL = "最初から"

GREETING = (
    "こんにちは。{city}のコンビニ交付サービス（コンビニでの証明書の取得）の案内窓口です。\n"
    "マルチコピー機でエラーが出たときは、画面に出ている文言をそのまま送るか、"
    "画面の写真を送ってください。原因と対処方法をご案内します。"
)
THANKS = "どういたしまして。またお困りのときは、いつでもメッセージを送ってください。"
RESOLVED_REPLY = "解決してよかったです。またお困りのときは、いつでもメッセージを送ってください。"
RESET = "最初からやり直します。コピー機の画面に出ている文言を送ってください。"
EMPTY = (
    "メッセージが読み取れませんでした。コピー機の画面に出ている文言を文字で送るか、"
    "画面の写真を送ってください。"
)
ASK_SCREEN = (
    "お困りのことがあったのですね。コピー機の画面にどのような文言が出ましたか？\n"
    "画面の文言をそのまま送っていただくか、画面の写真を送ってください。"
)
OUT_OF_SCOPE = (
    "申し訳ありません。この窓口では、コンビニ交付サービス（コンビニのマルチコピー機での"
    "証明書の取得）で出るエラーについてご案内しています。\n"
    "エラーでお困りの場合は、画面の文言をそのまま送るか、画面の写真を送ってください。"
)
NONE_MATCHED = (
    "候補の中にないのですね。画面の文言をそのまま送っていただくか、画面の写真を送ってください。"
    "解決しない場合は{contact}へお問い合わせください。"
)
REDACTED = (
    "※暗証番号・パスワード・マイナンバーは送らないでください。"
    "お送りいただいた番号やパスワードは読み取らずに消しており、保存もしていません。"
    "暗証番号やパスワードがほかの人に伝わった心配があるときは、変更をご検討ください。"
)
TOO_LONG = "メッセージが長いため、はじめの部分だけを読みました。"
CLARIFY = "次のどの表示に近いですか？当てはまるものを選んでください。"
QUESTION_INTRO = "「{title}」の表示ですね。原因を確かめるため、1つ教えてください。"
QUESTION_INTRO_MULTI = "原因を確かめるため、1つ教えてください。"
QUESTION_INTRO_MORE = "ありがとうございます。もう1つ教えてください。"
STAFF_QUESTION_INTRO = (
    "「{title}」の表示ですね。原因を絞り込むため、住民の方に次のことを確認してください。"
)
STAFF_QUESTION_INTRO_MULTI = "原因を絞り込むため、住民の方に次のことを確認してください。"
REASK = "すみません、お答えを読み取れませんでした。選択肢から選ぶか、言葉で教えてください。"
ANSWER = "【{title}】\n原因: {summary}\n\n対処: {remedy}"
SCREEN_LINE = "画面の表示: 「{screen}」"
UNSURE = "原因を1つに絞りきれませんでした。次のどれかが考えられます。"
WHERE_TO_ASK = "解決しない場合は、{contact}へお問い合わせください。"
TOPIC_TAIL = "ご不明な点は{contact}へお問い合わせください。"
IMAGE_REJECTED = {
    "too_large": "画像が大きすぎるため読み取れませんでした（10MB まで）。"
    "画面の部分だけを写した写真か、画面の文言を文字で送ってください。",
    "not_image": "画像として読み取れないファイルでした。"
    "コピー機の画面の写真（JPEG か PNG）を送るか、画面の文言を文字で送ってください。",
    "corrupt": "画像が壊れているため読み取れませんでした。"
    "もう一度撮って送るか、画面の文言を文字で送ってください。",
}
IMAGE_UNREADABLE = (
    "読み取った文字の中に、コンビニ交付のエラーの文言は見つかりませんでした。"
    "エラーの画面ではないか、文字の一部しか写っていない可能性があります。"
    "エラーが出ている場合は、画面の文言を文字で送っていただけますか。"
)
IMAGE_READ = "写真から次の文字を読み取りました。\n「{text}」"
# Long OCR text is shortened in the reply; the whole text is in the reply's ocr_text field.
IMAGE_READ_MAX_CHARS = 80
HANDOFF_LABEL = "職員に相談"
RESOLVED = "解決した"
NOT_RESOLVED = "解決しない"
END_HANDOFF_WORDS = ("終了", "相談終了", "相談を終了", "終わり", "おわり")
HANDOFF_OPENED = (
    "{city}の職員におつなぎします。このまま、このトークでお待ちください。"
    "職員からの返信は「市の職員より」と付けてお届けします。\n"
    "相談を終えるときは「終了」と送ってください。"
)
HANDOFF_HOURS = "窓口の受付時間は{hours}です。"
HANDOFF_TIMEOUT = (
    "お待たせしてすみません。ただいま職員がすぐに対応できません。"
    "お急ぎの場合は{contact}へお問い合わせください。"
)
NO_HANDOFF = (
    "この画面からは職員におつなぎできません。お手数ですが、{contact}へ直接お問い合わせください。"
)
HANDOFF_ENDED = "職員との相談を終了しました。またお困りのときは、画面の文言を送ってください。"
STAFF_PREFIX = "【市の職員より】"
NOT_RESOLVED_REPLY = (
    "お役に立てず申し訳ありません。職員に相談することもできます。"
    "「職員に相談」を選ぶか、画面の文言をもう一度送ってください。"
)
OFFER_HANDOFF = (
    "うまくご案内できていないようです。職員に相談する場合は「職員に相談」を選んでください。"
)
IN_HOURS = "（{clock}は、毎日の利用時間内です。年末年始などの停止日でないかもご確認ください。）"
OUT_OF_HOURS = "（{clock}は利用時間外です。{start}から利用できます。）"
EXPIRED = "前回のやり取りから時間がたったため、最初から伺います。"


def contact(city: Municipality) -> str:
    """Name where to ask: the office and its phone, or just 市役所の窓口 when no number is set."""
    office = city.office_name or "市役所"
    if city.phone:
        return f"{office}（電話 {city.phone}）"
    return "市役所の窓口"


def handoff_opened(city: Municipality) -> str:
    text = HANDOFF_OPENED.format(city=city.name)
    if city.opening_hours:
        text += "\n" + HANDOFF_HOURS.format(hours=city.opening_hours)
    return text


def handoff_timeout(city: Municipality) -> str:
    text = HANDOFF_TIMEOUT.format(contact=contact(city))
    if city.opening_hours:
        text += "\n" + HANDOFF_HOURS.format(hours=city.opening_hours)
    return text


def service_hours_note(city: Municipality, at: datetime) -> str:
    """Say whether a time falls inside the kiosk's daily service hours, when they are known."""
    try:
        start = time.fromisoformat(city.kiosk_service_start)
        end = time.fromisoformat(city.kiosk_service_end)
    except ValueError:
        return ""
    moment = at.time().replace(tzinfo=None)
    clock = f"{at.hour}時{at.minute:02d}分"
    if start <= moment < end:
        return IN_HOURS.format(clock=clock)
    return OUT_OF_HOURS.format(clock=clock, start=f"{start.hour}時{start.minute:02d}分")


def greeting(city: Municipality) -> str:
    return GREETING.format(city=city.name)


def answer(error: KioskError, cause: Cause, city: Municipality) -> str:
    lines = [ANSWER.format(title=error.title, summary=cause.summary, remedy=cause.remedy.strip())]
    lines.append(WHERE_TO_ASK.format(contact=contact(city)))
    return "\n\n".join(lines)


def unsure(causes: list[tuple[KioskError, Cause]], city: Municipality) -> str:
    lines = [UNSURE]
    for _error, cause in causes:
        lines.append(f"・{cause.summary}\n　→ {_first_sentence(cause.remedy)}")
    lines.append(WHERE_TO_ASK.format(contact=contact(city)))
    return "\n".join(lines)


def question(title: str | None, text: str, staff: bool = False, again: bool = False) -> str:
    """Frame a follow-up question: the first names the message, a second one says "one more"."""
    if staff:
        intro = STAFF_QUESTION_INTRO.format(title=title) if title else STAFF_QUESTION_INTRO_MULTI
    elif again:
        intro = QUESTION_INTRO_MORE
    else:
        intro = QUESTION_INTRO.format(title=title) if title else QUESTION_INTRO_MULTI
    return f"{intro}\n{text}"


def choices_as_text(labels: list[str]) -> str:
    # PC LINE users get no quick-reply buttons, so the choices are also written out.
    return "\n".join(f"・{label}" for label in labels)


def image_read(text: str) -> str:
    flat = " ".join(text.split())
    if not flat:
        return ""
    if len(flat) > IMAGE_READ_MAX_CHARS:
        flat = flat[: IMAGE_READ_MAX_CHARS - 1] + "…"
    return IMAGE_READ.format(text=flat)


def _first_sentence(text: str) -> str:
    head, sep, _ = text.strip().partition("。")
    return head + sep

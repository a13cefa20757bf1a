import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.normalize import compact, mask_numbers, normalize, to_hiragana

RADICAL_BLOCKS = range(0x2E80, 0x2FE0)
KANGXI = range(0x2F00, 0x2FD6)

# CJK Radicals Supplement shapes that only occur as part of a kanji (⺅ is the left side
# of 休), so normalize() has no whole kanji to turn them into.
COMPONENT_RADICALS = frozenset(
    "⺀⺁⺂⺃⺄⺅⺆⺇⺈⺉⺊⺋⺌⺍⺎⺏⺐⺑⺒⺓⺔⺕⺖⺗⺘⺙⺛⺞⺡⺢⺣⺤⺥⺦⺧⺨⺪⺫⺭⺮⺯⺰⺱⺲⺳⺴⺵⺶"
    "⺷⺸⺹⺺⺻⺽⺾⺿⻀⻂⻃⻈⻊⻌⻍⻎⻏⻐⻒⻕⻖⻗⻞⻟⻠"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("⼾籍証明書・⼾籍の附票", "戸籍証明書・戸籍の附票", id="seed-koseki"),
        pytest.param("住⺠登録", "住民登録", id="seed-jumin"),
        pytest.param("⼾", "戸", id="kangxi-door-not-traditional"),
        pytest.param("⾭", "青", id="kangxi-blue"),
        pytest.param("⿈", "黄", id="kangxi-yellow"),
        pytest.param("⾏政", "行政", id="kangxi-walk"),
        pytest.param("⾒る", "見る", id="kangxi-see"),
        pytest.param("⽣年⽉⽇", "生年月日", id="kangxi-plain-nfkc"),
        pytest.param("市⺠課", "市民課", id="supplement-civilian"),
        pytest.param("⻑期", "長期", id="supplement-long"),
        pytest.param("⻘", "青", id="supplement-blue"),
        pytest.param("⻝", "食", id="supplement-eat"),
        pytest.param("⻳", "亀", id="supplement-c-turtle-not-chinese"),
    ],
)
def test_normalize_maps_radicals(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_normalize_leaves_no_kangxi_radical() -> None:
    for code in KANGXI:
        result = normalize(chr(code))
        assert all(ord(char) not in RADICAL_BLOCKS for char in result), f"U+{code:04X}"


def test_normalize_keeps_only_component_radicals() -> None:
    survivors = {
        chr(code)
        for code in RADICAL_BLOCKS
        if unicodedata.name(chr(code), None)
        and any(ord(char) in RADICAL_BLOCKS for char in normalize(chr(code)))
    }
    assert survivors == COMPONENT_RADICALS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("住民票\u200bの写し", "住民票の写し", id="zero-width-space"),
        pytest.param("\ufeff暗証番号", "暗証番号", id="bom"),
        pytest.param("マイ\u200dナ\u2060カード", "マイナカード", id="zwj-word-joiner"),
        pytest.param("葛\U000e0100飾区", "葛飾区", id="ideographic-variation-selector"),
        pytest.param("⚠\ufe0fエラー", "⚠エラー", id="variation-selector-16"),
        pytest.param("暗証\x00番号\x07", "暗証番号", id="control-characters"),
        pytest.param("暗証\ud800番号", "暗証番号", id="lone-surrogate"),
        pytest.param("\u00adカード", "カード", id="soft-hyphen"),
    ],
)
def test_normalize_removes_invisible_characters(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(unicodedata.normalize("NFD", "が"), "が", id="nfd-ga"),
        pytest.param(unicodedata.normalize("NFD", "データ"), "データ", id="nfd-data"),
        pytest.param("ﾃﾞｰﾀ", "データ", id="halfwidth-data"),
        pytest.param("ﾃﾞｰﾀｴﾗｰ", "データエラー", id="halfwidth-data-error"),
        pytest.param("テ゛ータ", "データ", id="standalone-dakuten"),
        pytest.param("か゛いこく", "がいこく", id="standalone-dakuten-hiragana"),
        pytest.param("ハ゜スワード", "パスワード", id="standalone-handakuten"),
        pytest.param("あ゛", "あ", id="dakuten-without-voiced-form"),
        pytest.param("゛", "", id="dakuten-alone"),
    ],
)
def test_normalize_composes_voicing_marks(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ＭＹナンバー", "myナンバー", id="fullwidth-casefold"),
        pytest.param("ＵＳＢ", "usb", id="fullwidth-latin"),
        pytest.param("（証明書交付サービス２）", "(証明書交付サービス2)", id="fullwidth-brackets"),
        pytest.param("１２：００", "12:00", id="fullwidth-digits"),
        pytest.param("ｺﾝﾋﾞﾆ交付", "コンビニ交付", id="halfwidth-katakana"),
    ],
)
def test_normalize_applies_nfkc_and_casefold(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("9:00〜17:00", id="wave-dash"),
        pytest.param("9:00～17:00", id="fullwidth-tilde"),
        pytest.param("9:00~17:00", id="ascii-tilde"),
        pytest.param("9:00∼17:00", id="tilde-operator"),
        pytest.param("9:00⁓17:00", id="swung-dash"),
    ],
)
def test_normalize_folds_tildes_to_wave_dash(text: str) -> None:
    assert normalize(text) == "9:00〜17:00"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("E-102", id="hyphen-minus"),
        pytest.param("E−102", id="minus-sign"),
        pytest.param("E‐102", id="hyphen"),
        pytest.param("E–102", id="en-dash"),
        pytest.param("E—102", id="em-dash"),
        pytest.param("E―102", id="horizontal-bar"),
        pytest.param("E─102", id="box-drawing"),
        pytest.param("Eー102", id="long-vowel-mark"),
        pytest.param("Eｰ102", id="halfwidth-long-vowel"),
        pytest.param("Ｅ－１０２", id="fullwidth"),
    ],
)
def test_normalize_makes_error_code_hyphen_ascii(text: str) -> None:
    assert normalize(text) == "e-102"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("プリンター", "プリンター", id="printer-unchanged"),
        pytest.param("コピー機", "コピー機", id="copier-unchanged"),
        pytest.param("デ-タ", "データ", id="hyphen-minus"),
        pytest.param("デ―タ", "データ", id="horizontal-bar"),
        pytest.param("デ−タ", "データ", id="minus-sign"),
        pytest.param("エラ‐", "エラー", id="hyphen-at-end"),
        pytest.param("デ一タ", "データ", id="kanji-one-between-katakana"),
        pytest.param("エラ一", "エラー", id="kanji-one-at-end"),
        pytest.param("サ一ビス", "サービス", id="kanji-one-in-service"),
        pytest.param("カード一枚", "カード一枚", id="kanji-one-as-number"),
        pytest.param("一定時間", "一定時間", id="kanji-one-after-nothing"),
        pytest.param("9時-17時", "9時-17時", id="hyphen-between-kanji"),
    ],
)
def test_normalize_resolves_long_vowel_lookalikes(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("口ック", "ロック", id="at-start"),
        pytest.param("暗証番号口ック中", "暗証番号ロック中", id="after-kanji-before-small-tsu"),
        pytest.param("口ーソン", "ローソン", id="before-long-vowel"),
        pytest.param("プ口グラム", "プログラム", id="after-katakana"),
        pytest.param("の口グイン", "のログイン", id="after-hiragana"),
        pytest.param("窓口サービス", "窓口サービス", id="madoguchi-kept"),
        pytest.param("人口", "人口", id="jinkou-kept"),
        pytest.param("口座", "口座", id="kouza-kept"),
    ],
)
def test_normalize_turns_mouth_kanji_into_katakana_ro(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("3O58", "3058", id="capital-o"),
        pytest.param("3o58", "3058", id="small-o"),
        pytest.param("1l2", "112", id="small-l"),
        pytest.param("2I5", "215", id="capital-i"),
        pytest.param("1|0", "110", id="pipe"),
        pytest.param("1OO8", "1008", id="run-of-o"),
        pytest.param("Oil 10", "oil 10", id="word-kept"),
        pytest.param("30分", "30分", id="digits-only"),
        pytest.param("10o", "10o", id="not-inside-digits"),
    ],
)
def test_normalize_repairs_digit_lookalikes(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("暗証蕃号", "暗証番号", id="ocr-ban"),
        pytest.param(
            "市区町村にお問合せください", "市区町村にお問い合わせください", id="toiawase-1"
        ),
        pytest.param("お問合わせ", "お問い合わせ", id="toiawase-2"),
        pytest.param("お問い合せ", "お問い合わせ", id="toiawase-3"),
        pytest.param("お問い合わせ", "お問い合わせ", id="toiawase-canonical"),
        pytest.param("問合せ先", "問い合わせ先", id="toiawase-without-o"),
        pytest.param("お問\n合せ", "お問い合わせ", id="toiawase-line-break"),
        pytest.param("髙橋", "高橋", id="itaiji-taka"),
        pytest.param("山﨑", "山崎", id="itaiji-saki"),
        pytest.param("渡邊", "渡辺", id="itaiji-watanabe-1"),
        pytest.param("渡邉", "渡辺", id="itaiji-watanabe-2"),
        pytest.param("齋藤", "斎藤", id="itaiji-saitou-1"),
        pytest.param("齊藤", "斎藤", id="itaiji-saitou-2"),
        pytest.param("戶籍", "戸籍", id="traditional-door"),
    ],
)
def test_normalize_unifies_spellings(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("\u3000用紙\u00a0\u3000切れ\u3000", "用紙切れ", id="ideographic-and-nbsp"),
        pytest.param("込み合っ ております", "込み合っております", id="seed-line-break-space"),
        pytest.param("市区町\n村", "市区町村", id="seed-line-break"),
        pytest.param("市区町\r\n村", "市区町村", id="crlf"),
        pytest.param("カード\tを置く", "カードを置く", id="tab"),
        pytest.param("hello   world", "hello world", id="ascii-words-kept"),
        pytest.param("e-102 エラー", "e-102 エラー", id="ascii-next-to-kana-kept"),
        pytest.param("12月 5日", "12月 5日", id="kanji-next-to-digit-kept"),
        pytest.param("  a \r\n b  ", "a b", id="trim-and-collapse"),
        pytest.param(" \u2028\u3000\n", "", id="only-whitespace"),
    ],
)
def test_normalize_collapses_whitespace(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "福岡県古賀市は１２月５日午後１１：００まで",
            "福岡県古賀市は#月#日午後#:#まで",
            id="filled",
        ),
        pytest.param(
            "〇〇県〇〇市はＸＸ月ＸＸ日午後ＸＸ：Ｘ\nＸまで",
            "〇〇県〇〇市は#月#日午後#:#まで",
            id="seed-x",
        ),
        pytest.param("〷月〷日", "#月#日", id="seed-telegraph-mark"),
        pytest.param("３月３１日", "#月#日", id="date-filled"),
        pytest.param("（証明書交付サービス２）", "(証明書交付サービス#)", id="service-filled"),
        pytest.param("（証明書交付サー\nビスＸ）", "(証明書交付サービス#)", id="service-seed"),
        pytest.param("12月5日午後11:00", "#月#日午後#:#", id="ascii"),
        pytest.param("windows xp", "windowsxp", id="x-inside-word-kept"),
        pytest.param("〇〇市", "〇〇市", id="name-placeholder-kept"),
    ],
)
def test_compact_and_mask_numbers(text: str, expected: str) -> None:
    assert mask_numbers(compact(text)) == expected


def test_compact_removes_every_space() -> None:
    assert compact("e-102 エラー が 出た") == "e-102エラーが出た"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("アンショウバンゴウ", "あんしょうばんごう", id="plain"),
        pytest.param("コピー", "こぴー", id="long-vowel-kept"),
        pytest.param("ヴァ", "ゔぁ", id="vu"),
        pytest.param("ヵヶ", "ゕゖ", id="small-ka-ke"),
        pytest.param("ヽヾ", "ゝゞ", id="iteration-marks"),
        pytest.param("ヷ", "ヷ", id="no-hiragana-form"),
        pytest.param("abc漢字", "abc漢字", id="non-kana"),
    ],
)
def test_to_hiragana(text: str, expected: str) -> None:
    assert to_hiragana(text) == expected


LOOKALIKES = st.text(alphabet="口一ー-―−アッ窓枚あe1oli|O \n\u3099゛ﾞか~問合せい", max_size=30)
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)


@settings(max_examples=500, deadline=None)
@given(st.one_of(ANY_TEXT, LOOKALIKES))
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_normalize_output_is_clean(text: str) -> None:
    result = normalize(text)
    assert result == result.strip()
    assert "  " not in result
    for char in result:
        assert unicodedata.category(char) not in {"Cc", "Cf", "Cs"}, f"U+{ord(char):04X}"
    assert " " not in compact(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "ただ今、込み合っております。時間をおいて再度お試しください。" * 1400, id="40k-prose"
        ),
        pytest.param("\ufdfa" * 5000, id="5000-fdfa"),
        pytest.param("口ー一-" * 10_000, id="40k-lookalikes"),
        pytest.param("口" * 39_999 + "ッ", id="40k-mouth-chain"),
        pytest.param("1o" * 20_000, id="40k-digit-lookalikes"),
    ],
)
def test_normalize_runs_in_bounded_time(text: str) -> None:
    started = time.perf_counter()
    result = normalize(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s for {len(text)} characters"
    assert normalize(result) == result

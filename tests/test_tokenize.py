import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot import tokenize as tokenize_module
from bot.normalize import normalize
from bot.tokenize import MAX_INPUT_BYTES, Token, content_terms, reading, tokenize, warm_up


def test_tokenize_fills_every_field() -> None:
    tokens = tokenize("暗証番号が間違っております")

    assert [token.surface for token in tokens] == [
        "暗証",
        "番号",
        "が",
        "間違っ",
        "て",
        "おり",
        "ます",
    ]
    assert tokens[3] == Token(
        surface="間違っ",
        normalized="間違う",
        dictionary="間違う",
        reading="まちがっ",
        pos="動詞",
        subclass="*",
    )
    assert tokens[0].reading == "あんしょう"


def test_tokenize_marks_place_names() -> None:
    tokens = tokenize("本籍は古賀で住所は福岡市")
    places = [token.surface for token in tokens if token.subclass == "地名"]
    assert places == ["古賀", "福岡市"]


def test_tokenize_keeps_document_names_whole() -> None:
    assert [token.surface for token in tokenize("住民票と証明書")] == ["住民票", "と", "証明書"]


def test_reading_matches_hiragana_input() -> None:
    assert reading("あんしょうばんごう") == "あんしょうばんごう"
    assert reading("暗証番号") == "あんしょうばんごう"


@pytest.mark.parametrize(
    ("variant", "written"),
    [
        pytest.param("アンショウバンゴウ", "暗証番号", id="katakana"),
        pytest.param("じゅうきかーど", "住基カード", id="hiragana-card"),
        pytest.param("じゅうみんひょう", "住民票", id="hiragana-juminhyo"),
    ],
)
def test_reading_matches_kana_variants(variant: str, written: str) -> None:
    assert reading(variant) == reading(written)


def test_reading_skips_punctuation_and_spaces() -> None:
    assert reading(normalize("暗証番号。 ロック")) == "あんしょうばんごうろっく"


def test_content_terms_drop_function_words() -> None:
    assert content_terms("暗証番号が間違っております。") == ["暗証", "番号", "間違う"]


def test_content_terms_lowercase_and_drop_prefixes() -> None:
    assert content_terms("usbメモリでお問い合わせください") == ["usb", "メモリ", "問い合わせる"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ご利用いただけません", ["利用"], id="go-riyou"),
        pytest.param("ご本人が来庁", ["本人", "来庁"], id="go-honnin"),
        pytest.param("ご案内いたします", ["案内"], id="go-prefix-token"),
        pytest.param("お金", ["お金"], id="single-kanji-kept"),
    ],
)
def test_content_terms_cut_honorific_prefix(text: str, expected: list[str]) -> None:
    assert content_terms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("…", id="ellipsis"),
        pytest.param("エラー…用紙", id="ellipsis-in-text"),
        pytest.param("㏆", id="square-ckg"),
        pytest.param("👨‍👩‍👧‍👦", id="family-emoji"),
    ],
)
def test_tokenize_drops_empty_tokens(text: str) -> None:
    for tokens in (tokenize(text), tokenize(normalize(text))):
        assert tokens
        assert all(token.surface for token in tokens)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("暗証\ud800番号", id="lone-surrogate"),
        pytest.param("\ud83d\ude00", id="surrogate-pair-as-two-code-points"),
        pytest.param("\x00\x07暗証番号\x1b[0m", id="control-characters"),
        pytest.param("😀🙏👨‍👩‍👧‍👦", id="emoji-only"),
        pytest.param("\u200b\ufeff", id="invisible-only"),
    ],
)
def test_tokenize_survives_odd_input(text: str) -> None:
    tokens = tokenize(text)
    assert all(token.surface for token in tokens)
    assert isinstance(reading(text), str)
    assert isinstance(content_terms(text), list)


def test_tokenize_empty_text_returns_no_tokens() -> None:
    assert tokenize("") == []
    assert reading("") == ""


@pytest.mark.parametrize("characters", [16_383, 16_384], ids=["49149-bytes", "49152-bytes"])
def test_tokenize_accepts_input_at_byte_limit(characters: int) -> None:
    text = "あ" * characters

    tokens = tokenize(text)

    covered = sum(len(token.surface) for token in tokens)
    assert 0 < covered <= MAX_INPUT_BYTES // 3


def test_tokenize_cuts_on_character_boundary() -> None:
    text = "a" + "あ" * 16_383  # 49,150 bytes, so the cut lands inside a character
    tokens = tokenize(text)
    assert "".join(token.surface for token in tokens) == "a" + "あ" * 16_382


def test_tokenize_handles_nfkc_expansion() -> None:
    assert tokenize(normalize("\ufdfa" * 5000))


def test_tokenize_survives_sudachi_own_expansion(caplog: pytest.LogCaptureFixture) -> None:
    # Sudachi expands ㍻ to 平成 itself and then rejects the text as too long.
    tokens = tokenize("㍻" * 16_383)
    assert tokens
    assert "retrying" in caplog.text


def test_tokenize_is_thread_safe() -> None:
    texts = [
        f"{index}回目: 暗証番号ロック中のため、ご利用いただけません。住民票を取りたい"
        for index in range(1000)
    ]
    expected = [tokenize(text) for text in texts]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(tokenize, texts))

    assert results == expected


def test_threads_share_dictionary_not_tokenizer() -> None:
    warm_up()
    found: list[tuple[object, object]] = []

    def record() -> None:
        found.append((tokenize_module._load_dictionary(), tokenize_module._tokenizer()))

    threads = [threading.Thread(target=record) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({id(dictionary) for dictionary, _ in found}) == 1
    assert len({id(tokenizer) for _, tokenizer in found}) == 4

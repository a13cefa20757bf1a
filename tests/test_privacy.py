import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.privacy import MASK, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("マイナンバーは305817492663です", "305817492663"),
        ("3058 1749 2663 で合ってますか", "3058 1749 2663"),
        ("番号 3058-1749-2663", "3058-1749-2663"),
        ("３０５８１７４９２６６３", "３０５８１７４９２６６３"),
        ("暗証番号は1234です", "1234"),
        ("PIN 0000 を入れた", "0000"),
        ("パスワード９８７６を入れた", "９８７６"),
        ("署名用パスワードはABC12345です", "ABC12345"),
        ("暗証番号は 1 3 5 7", "1 3 5 7"),
        ("署名用パスワードはQwerty7788です", "Qwerty"),
        ("署名用のパスワードはkogacity2024", "kogacity"),
        ("暗証番号は1-3-5-7です", "1-3-5-7"),
    ],
    ids=[
        "12-digits",
        "12-spaced",
        "12-hyphen",
        "12-fullwidth",
        "pin",
        "pin-en",
        "pin-fw",
        "sign",
        "pin-spaced",
        "pin-password-tail",
        "pin-password-year",
        "pin-hyphen",
    ],
)
def test_redact_removes_secret(text: str, secret: str) -> None:
    result = redact(text)
    assert result.redacted
    assert secret not in result.text
    assert MASK in result.text


@pytest.mark.parametrize(
    "text",
    [
        "住民票を取りたい",
        "暗証番号を3回間違えた",
        "2024年に暗証番号を変えた",
        "手数料は300円ですか",
        "12月5日午後11:00までメンテナンス中",
        "暗証番号を3回間違えて、12 3 4 5 のどれか",
    ],
)
def test_redact_keeps_ordinary_text(text: str) -> None:
    result = redact(text)
    assert not result.redacted
    assert result.text == text


@settings(max_examples=200, deadline=None)
@given(
    pin=st.integers(min_value=0, max_value=9999).map(lambda n: f"{n:04d}"),
    before=st.sampled_from(["暗証番号は", "PINは", "パスワード", "番号"]),
    after=st.sampled_from(["です", "でした", "", "を入れたらエラー"]),
)
def test_redact_never_leaks_pin(pin: str, before: str, after: str) -> None:
    assert pin not in redact(f"{before}{pin}{after}").text


@settings(max_examples=200, deadline=None)
@given(
    number=st.integers(min_value=0, max_value=10**12 - 1).map(lambda n: f"{n:012d}"),
    separator=st.sampled_from(["", " ", "-", "　"]),
)
def test_redact_never_leaks_my_number(number: str, separator: str) -> None:
    grouped = separator.join(number[i : i + 4] for i in range(0, 12, 4))
    result = redact(f"私の番号は{grouped}です")
    assert result.redacted
    assert not any(ch.isdigit() for ch in result.text)

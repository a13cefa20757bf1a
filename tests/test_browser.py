"""The web simulator page in headless Chromium, against the real app on loopback.

Chromium is Debian's package (`apt-get install -y chromium`); playwright never downloads one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from adapters.server import create_app
from bot.settings import Settings
from tests.servers import serve

pytestmark = pytest.mark.browser

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTO = SHARED / "eval" / "images" / "photo_mild-07.jpg"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# OCR and the first Sudachi call can take seconds on a loaded CI machine.
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.skip("chromium not found: install it with 'apt-get install -y chromium'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db_path = tmp_path_factory.mktemp("browser") / "state.sqlite3"
    with serve(create_app(Settings(db_path=db_path))) as url:
        yield url


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    # A fresh context per test gives each test its own sessionStorage, so its own user id.
    context = browser.new_context(locale="ja-JP", viewport={"width": 420, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(base_url + "/")
    yield page
    context.close()


def send(page: Page, text: str) -> None:
    page.get_by_label("メッセージ", exact=True).fill(text)
    page.get_by_role("button", name="送信", exact=True).click()


def test_page_conversation_choices_reset_and_photo(page: Page, tmp_path: Path) -> None:
    bot = page.locator(".msg.bot")
    greeting_count = bot.count()

    send(page, "ご利用いただけないカードです")
    expect(page.locator(".msg.me").last).to_have_text("ご利用いただけないカードです")
    expect(bot.last).to_have_attribute("data-kind", "question")
    rows = page.locator(".choices")
    expect(rows).to_have_count(1)
    question_row = rows.nth(0)
    choice = question_row.get_by_role("button", name="住基カード")
    expect(choice).to_be_enabled()

    choice.click()
    expect(bot.last).to_have_attribute("data-kind", "answer")
    expect(bot.last).to_contain_text("マイナンバーカード")
    expect(page.locator(".msg.me").last).to_have_text("住基カード")
    for button in question_row.get_by_role("button").all():
        expect(button).to_be_disabled()
    expect(choice).to_have_class("chosen")

    page.get_by_role("button", name="最初から").click()
    expect(bot.last).to_have_attribute("data-kind", "notice")
    expect(bot.last).to_contain_text("最初からやり直します")
    assert bot.count() == greeting_count + 3

    if PHOTO.is_file():
        page.locator("#file").set_input_files(PHOTO)
        expect(page.locator(".msg.me.photo img").last).to_be_visible()
        expect(bot.last).to_have_attribute("data-kind", "answer")
        expect(bot.last).to_contain_text("暗証番号")
        expect(page.locator(".pending")).to_have_count(0)

    expect(page.locator(".msg.error")).to_have_count(0)
    screenshot = tmp_path / "conversation.png"
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000
    if not PHOTO.is_file():
        pytest.skip(f"photo step skipped: {PHOTO} is absent")


def test_large_photo_shrunk_before_upload(page: Page, tmp_path: Path) -> None:
    if not PHOTO.is_file():
        pytest.skip(f"eval photo {PHOTO} is absent")
    from PIL import Image

    # An uncompressed PNG of 4000x3000 pixels is about 36 MB, over the 10 MB upload limit.
    large = tmp_path / "large.png"
    with Image.open(PHOTO) as photo:
        photo.convert("RGB").resize((4000, 3000)).save(large, compress_level=0)
    assert large.stat().st_size > 10 * 1024 * 1024

    page.locator("#file").set_input_files(large)
    bot = page.locator(".msg.bot")
    expect(bot.last).to_have_attribute("data-kind", "answer")
    expect(bot.last).to_contain_text("暗証番号")
    expect(page.locator(".msg.error")).to_have_count(0)


def test_markup_in_message_shown_as_text(page: Page) -> None:
    text = '<img src="x" onerror="document.title=1"><b>太字</b>'
    send(page, text)
    expect(page.locator(".msg.me").last).to_have_text(text)
    expect(page.locator(".msg.bot").last).to_have_attribute("data-kind", "fallback")
    assert page.locator("#log img, #log b").count() == 0
    assert page.title() != "1"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, "時間をおいて"), (413, "10MB まで"), (422, "受け付けられませんでした")],
    ids=["500", "413", "422"],
)
def test_http_error_shows_japanese_notice(page: Page, status: int, expected: str) -> None:
    page.route("**/api/messages", lambda route: route.fulfill(status=status, body="{}"))
    send(page, "暗証番号が間違っております")
    error = page.locator(".msg.bot.error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text(expected)
    expect(page.locator(".pending")).to_have_count(0)


def test_network_failure_shows_japanese_notice(page: Page) -> None:
    page.route("**/api/messages", lambda route: route.abort("connectionrefused"))
    send(page, "暗証番号が間違っております")
    error = page.locator(".msg.bot.error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("送信できませんでした")

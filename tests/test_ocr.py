"""Tests for reading kiosk-screen images offline with bot.ocr."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import unicodedata
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz import fuzz

from bot.ocr import MAX_IMAGE_BYTES, ImageError, read_image

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI checks out the evaluation images beside the repository clone.
EVAL_DIR = REPO_ROOT.parent / "shared" / "eval" / "images"

# The message text of each kiosk error screen, with the placeholders filled in as the evaluation
# images show them. Written with the ordinary kanji 民 (U+6C11), because OCR never outputs the
# radical code points (U+2EA0 for 民, U+2F3E for 戸) that PDF text extraction can produce.
SCREEN_TEXTS = {
    "1": "ご利用いただけないカードです。市区町村にお問合せください。",
    "2": (
        "福岡県古賀市は１２月５日午後１１：００までメンテナンス中のため、"
        "サービスをご利用いただけません。市区町村にお問い合わせください。"
    ),
    "3": (
        "ただ今、込み合っております。時間をおいて再度お試しください。"
        "解消しない場合は店員にご連絡ください。（証明書交付サービス１）"
    ),
    "4": "指定した証明書を交付できません。市区町村にお問合せください。",
    "5": "交付可能な証明書がありません。住民登録をしている市区町村にお問合せください。",
    "6": "一定時間操作が行われなかったため処理を終了します。",
    "7": "暗証番号が間違っております。",
    "8": "暗証番号を３回連続で間違いました。",
    "9": (
        "暗証番号ロック中のため、ご利用いただけません。"
        "住民登録をしている市区町村にお問合せください。"
    ),
    "10": "サービス提供時間外のため、現在ご利用いただけません。",
    "11": (
        "あなたの利用者証明用電子証明書の有効期限は３月３１日です。"
        "期限までに、住民登録している市区町村で更新手続きをしてください。"
    ),
}
MIN_PARTIAL_RATIO = 80


def compact(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def eval_cases() -> list[object]:
    expected_file = EVAL_DIR / "expected.json"
    if not expected_file.is_file():
        reason = f"evaluation images not found at {EVAL_DIR}"
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=reason))]

    entries = json.loads(expected_file.read_text(encoding="utf-8"))
    return [pytest.param(e["file"], e["error_id"], id=e["file"]) for e in entries]


def encode(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def text_image(
    text: str, size: tuple[int, int] = (900, 240), font_size: int = 40, mode: str = "RGB"
) -> Image.Image:
    background = (0, 0, 0, 0) if mode == "RGBA" else "white"
    image = Image.new(mode, size, background)
    font = ImageFont.load_default(size=font_size)
    ImageDraw.Draw(image).text((40, size[1] // 2 - font_size), text, font=font, fill="black")
    return image


def png_with_header_only(width: int, height: int) -> bytes:
    """Build a PNG whose header declares width x height but whose pixel data is a few bytes."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        checksum = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(overrides)
    return env


def run_child(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def loaded_engine() -> Iterator[None]:
    # The engine is a per-process singleton, so one read here loads it for the whole file.
    read_image(encode(text_image("WARM UP")))
    yield


# ---- recognition quality ----------------------------------------------------------------------


@pytest.mark.parametrize(("file_name", "error_id"), eval_cases())
def test_eval_image_contains_screen_text(file_name: str, error_id: str | None) -> None:
    result = read_image((EVAL_DIR / file_name).read_bytes())
    read_text = compact(result.text)

    assert result.lines, f"no text read from {file_name}"
    if error_id is None:
        scores = {key: fuzz.partial_ratio(compact(t), read_text) for key, t in SCREEN_TEXTS.items()}
        best = max(scores, key=lambda key: scores[key])
        assert scores[best] < MIN_PARTIAL_RATIO, (
            f"{file_name} shows no kiosk error but reads like message {best}: {result.text!r}"
        )
    else:
        score = fuzz.partial_ratio(compact(SCREEN_TEXTS[error_id]), read_text)
        assert score >= MIN_PARTIAL_RATIO, f"{file_name}: score {score:.0f}, read {result.text!r}"


def test_result_text_joins_lines() -> None:
    result = read_image(encode(text_image("KIOSK ERROR 42")))

    assert result.lines == ("KIOSK ERROR 42",)
    assert result.text == "KIOSK ERROR 42"
    assert result.seconds > 0


@pytest.mark.parametrize("tilt_degrees", [-6, 6])
def test_tilted_photo_lines_in_reading_order(tilt_degrees: int) -> None:
    image = Image.new("RGB", (900, 300), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    draw.text((40, 60), "ALPHA", font=font, fill="black")
    draw.text((480, 60), "BRAVO", font=font, fill="black")
    draw.text((40, 180), "CHARLIE", font=font, fill="black")
    draw.text((480, 180), "DELTA", font=font, fill="black")
    tilted = image.rotate(tilt_degrees, expand=True, fillcolor="white")

    result = read_image(encode(tilted))

    assert result.lines == ("ALPHA", "BRAVO", "CHARLIE", "DELTA")


def test_exif_orientation_applied() -> None:
    # With orientation 6 the stored pixels must be turned 90 degrees clockwise for display.
    stored_sideways = text_image("KIOSK ERROR 42").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6

    result = read_image(encode(stored_sideways, "JPEG", exif=exif, quality=95))

    assert result.lines == ("KIOSK ERROR 42",)


def test_corrupt_exif_ignored() -> None:
    # An EXIF block that ends in the middle of its first entry.
    broken_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03"
    photo = encode(text_image("KIOSK ERROR 42"), "JPEG", exif=broken_exif, quality=95)

    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        result = read_image(photo)

    assert result.lines == ("KIOSK ERROR 42",)
    assert [str(w.message) for w in escaped] == []


def test_transparent_screenshot_read_on_white() -> None:
    screenshot = text_image("KIOSK ERROR 42", mode="RGBA")

    result = read_image(encode(screenshot))

    assert result.lines == ("KIOSK ERROR 42",)


def test_large_photo_read_after_downscale() -> None:
    photo = text_image("KIOSK ERROR 42", size=(4000, 3000), font_size=160)

    result = read_image(encode(photo, "JPEG", quality=90))

    assert result.lines == ("KIOSK ERROR 42",)


def test_blank_image_reads_no_text_silently(capfd: pytest.CaptureFixture[str]) -> None:
    result = read_image(encode(Image.new("RGB", (640, 480), "white")))

    assert result.lines == ()
    assert result.text == ""
    assert capfd.readouterr() == ("", "")


def test_accepted_formats_all_read() -> None:
    image = text_image("KIOSK ERROR 42")
    for image_format in ("PNG", "JPEG", "WEBP", "GIF", "BMP"):
        result = read_image(encode(image, image_format))
        assert result.lines == ("KIOSK ERROR 42",), image_format


def test_concurrent_reads_agree() -> None:
    data = encode(text_image("KIOSK ERROR 42"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(read_image, [data] * 8))

    assert {result.lines for result in results} == {("KIOSK ERROR 42",)}


# ---- rejected input ---------------------------------------------------------------------------


def test_over_size_limit_too_large() -> None:
    with pytest.raises(ImageError) as caught:
        read_image(b"\x00" * (MAX_IMAGE_BYTES + 1))

    assert caught.value.reason == "too_large"


def test_size_at_limit_decoded() -> None:
    # Exactly at the limit the bytes are decoded, and zeros are no image.
    with pytest.raises(ImageError) as caught:
        read_image(b"\x00" * MAX_IMAGE_BYTES)

    assert caught.value.reason == "not_image"


def test_text_file_not_image() -> None:
    with pytest.raises(ImageError) as caught:
        read_image("暗証番号が間違っております。\n".encode())

    assert caught.value.reason == "not_image"


def test_unaccepted_format_not_image() -> None:
    with pytest.raises(ImageError) as caught:
        read_image(encode(text_image("KIOSK"), "TIFF"))

    assert caught.value.reason == "not_image"


def test_damaged_image_corrupt() -> None:
    jpeg = encode(text_image("KIOSK ERROR 42"), "JPEG", quality=90)
    damaged = {
        "empty file": b"",
        "JPEG cut in half": jpeg[: len(jpeg) // 2],
        "JPEG cut after its signature": jpeg[:16],
        "PNG with zero width": png_with_header_only(0, 100),
    }

    for description, data in damaged.items():
        with pytest.raises(ImageError) as caught:
            read_image(data)
        assert caught.value.reason == "corrupt", description


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (20_000, 20_000),  # over twice Pillow's own limit: Pillow raises
        (10_000, 10_000),  # between Pillow's limit and twice it: Pillow only warns
        (7_000, 6_000),  # under Pillow's limit, over this module's 40 megapixels
    ],
)
def test_decompression_bomb_corrupt(width: int, height: int) -> None:
    # Record warnings instead of raising them, to see whether Pillow's warning escapes.
    with warnings.catch_warnings(record=True) as escaped, pytest.raises(ImageError) as caught:
        warnings.simplefilter("always")
        read_image(png_with_header_only(width, height))

    assert caught.value.reason == "corrupt"
    assert [str(w.message) for w in escaped] == []


# ---- process isolation ------------------------------------------------------------------------


def test_import_loads_no_engine() -> None:
    script = """
        import json, sys
        import bot.ocr
        heavy = ("onnxruntime", "rapidocr", "numpy")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
    """
    child = run_child(script, child_env())

    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == []


def test_import_sets_telemetry_opt_out() -> None:
    env = child_env()
    env.pop("ORT_DISABLE_TELEMETRY", None)
    script = """
        import os
        import bot.ocr
        print(os.environ.get("ORT_DISABLE_TELEMETRY"))
    """
    child = run_child(script, env)

    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "1"


def test_engine_load_forces_telemetry_opt_out(tmp_path: Path) -> None:
    # onnxruntime is never really imported here: the hook records the environment at the moment
    # of the import and then blocks it, so a failure cannot send telemetry.
    image_path = tmp_path / "screen.png"
    image_path.write_bytes(encode(text_image("KIOSK")))
    script = """
        import os, sys
        os.environ["ORT_DISABLE_TELEMETRY"] = "0"

        class BlockOnnxruntime:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "onnxruntime":
                    print("at import:", os.environ.get("ORT_DISABLE_TELEMETRY"), flush=True)
                    raise ImportError("onnxruntime is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockOnnxruntime())
        import bot.ocr
        try:
            bot.ocr.read_image(open(sys.argv[1], "rb").read())
        except Exception as exc:
            print("engine failed:", type(exc).__name__)
    """
    child = run_child(script, child_env(), str(image_path))

    assert child.returncode == 0, child.stderr
    assert "at import: 1" in child.stdout.splitlines()
    assert "at import: 0" not in child.stdout.splitlines()


def test_read_works_without_network(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    image_path = tmp_path / "screen.png"
    image_path.write_bytes(encode(text_image("KIOSK ERROR 42")))
    script = """
        import json, socket, sys

        def blocked(*args, **kwargs):
            sys.stderr.write("NETWORK ATTEMPT\\n")
            raise OSError("network access is blocked in this test")

        socket.socket.connect = blocked
        socket.socket.connect_ex = blocked
        socket.socket.sendto = blocked
        socket.create_connection = blocked
        socket.getaddrinfo = blocked

        from bot.ocr import read_image
        result = read_image(open(sys.argv[1], "rb").read())
        print(json.dumps(result.lines))
    """
    env = child_env(HOME=str(home))
    env.pop("XDG_CACHE_HOME", None)
    # onnxruntime's telemetry client is native code that the socket patch above cannot stop,
    # so the child keeps the opt-out in its environment in case bot.ocr ever stops setting it.
    env["ORT_DISABLE_TELEMETRY"] = "1"

    child = run_child(script, env, str(image_path))

    assert child.returncode == 0, child.stderr
    assert "NETWORK ATTEMPT" not in child.stderr
    assert json.loads(child.stdout) == ["KIOSK ERROR 42"]
    assert not (home / ".cache" / "Microsoft").exists()
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []

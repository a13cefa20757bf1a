"""Read the text of a kiosk-screen photo or screenshot, offline.

The engine is RapidOCR 3.10 with the PP-OCRv6 small detection and recognition models that ship
inside the rapidocr wheel. The model files are passed by path, so rapidocr never reaches its
download code, and the recognition model contains its own character list, so no dictionary is
fetched either. The engine is loaded on the first image, so a process that never reads an image
does not import rapidocr, onnxruntime or numpy.

onnxruntime (1.32 from PyPI) contains a telemetry client that queues an event under
~/.cache/Microsoft when it is imported. It honours ORT_DISABLE_TELEMETRY=1 only if the variable
is in the environment before the import, so this module sets it before importing anything.
"""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import io
import logging
import math
import statistics
import struct
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from rapidocr import RapidOCR

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")

# rapidocr shrinks anything larger to this longest side itself (Global.max_side_len in its
# config.yaml), so shrinking first only saves memory and gives the engine the same input size.
_ENGINE_MAX_SIDE = 2000

# Measured with rapidocr 3.10.0 on synthetic kiosk photos on a 2-vCPU VM. Without the angle
# classifier and with the detector input capped at 640 px, an image took about 0.25 s instead
# of 0.5-1.3 s. Peak RSS fell from up to 650 MB to 340-450 MB, and accuracy did not change.
_ENGINE_PARAMS: dict[str, object] = {
    "Global.use_cls": False,
    "Det.limit_side_len": 640,
    "Det.limit_type": "max",
    "Global.log_level": "error",
}
_DET_MODEL = "PP-OCRv6_det_small.onnx"
_REC_MODEL = "PP-OCRv6_rec_small.onnx"

# File signatures of the accepted formats. A file that starts with one of these but that Pillow
# cannot open is a damaged image, not some other kind of file.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")

# True when onnxruntime was imported before this module could set ORT_DISABLE_TELEMETRY.
_TELEMETRY_SET_TOO_LATE = "onnxruntime" in sys.modules and (
    os.environ.get("ORT_DISABLE_TELEMETRY") != "1"
)

ImageErrorReason = Literal["too_large", "not_image", "corrupt"]


class ImageError(ValueError):
    """An upload that cannot be read as an image.

    ``reason`` is "too_large" (over MAX_IMAGE_BYTES), "not_image" (not PNG, JPEG, WebP, GIF or
    BMP) or "corrupt" (damaged, zero-sized or over MAX_IMAGE_PIXELS).
    """

    def __init__(self, reason: ImageErrorReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: ImageErrorReason = reason


@dataclass(frozen=True)
class OcrResult:
    """Recognised text lines in reading order, top to bottom and then left to right."""

    text: str
    lines: tuple[str, ...]
    seconds: float


def read_image(data: bytes) -> OcrResult:
    """Decode an uploaded image and recognise its text lines.

    ``seconds`` is the wall time of this call: decoding, waiting for a concurrent call to finish
    and, on the first call in a process, loading the engine. Engine load plus first read took
    about 1.2 s on a 2-vCPU VM in bench/bench_ocr.py. Raises ImageError for input that is
    rejected before recognition. Any other exception means the engine failed.
    """
    started = time.perf_counter()
    image = _decode(data)
    engine = _get_engine()
    pixels = _to_bgr_array(image)
    with _engine_lock:
        # RapidOCR keeps per-call settings on the engine object, so calls are serialised.
        output = engine(pixels)
    lines = _lines_in_reading_order(output)
    return OcrResult(text="\n".join(lines), lines=lines, seconds=time.perf_counter() - started)


# ---- decoding -------------------------------------------------------------------------------

# warnings.catch_warnings changes process-wide state, so decodes take turns.
_decode_lock = threading.Lock()


def _decode(data: bytes) -> Image.Image:
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError("too_large", f"{len(data)} bytes, the limit is {MAX_IMAGE_BYTES} bytes")
    if not data:
        raise ImageError("corrupt", "the file is empty (0 bytes)")

    with _decode_lock, warnings.catch_warnings():
        # Pillow warns about damage it can work around, such as corrupt EXIF data in a photo.
        # Those images are still read, so their warnings are dropped instead of printed.
        # NOTE: catch_warnings is not thread-safe on Python 3.11. While a decode runs, other
        # threads' warnings are dropped too, and a filter that they add is lost at the end.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _open_checked(data)
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
        except ImageError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageError("corrupt", f"too many pixels: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise ImageError("corrupt", f"decoding failed: {exc}") from exc


def _open_checked(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as exc:
        if _has_image_signature(data):
            raise ImageError("corrupt", "the header of the image is damaged") from exc
        raise ImageError("not_image", "not a PNG, JPEG, WebP, GIF or BMP image") from exc

    if image.format == "JPEG":
        # Phone cameras take 48-200 megapixel photos; JPEG can be decoded at 1/2, 1/4 or 1/8
        # scale directly, so a large photo never needs its full size in memory.
        image.draft("RGB", (_ENGINE_MAX_SIDE, _ENGINE_MAX_SIDE))
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("corrupt", f"the image has zero size ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            "corrupt", f"{width}x{height} pixels, the limit is {MAX_IMAGE_PIXELS} pixels"
        )
    return image


def _has_image_signature(data: bytes) -> bool:
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return is_webp or data.startswith(_SIGNATURES)


def _to_rgb(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        # Transparent areas become white, the background of most screenshots.
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = image.convert("RGB")

    rgb.thumbnail((_ENGINE_MAX_SIDE, _ENGINE_MAX_SIDE))
    return rgb


def _to_bgr_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    import numpy as np

    # rapidocr takes a 3-channel array as BGR, the OpenCV channel order.
    rgb = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


# ---- engine ---------------------------------------------------------------------------------

_engine: RapidOCR | None = None
_engine_load_lock = threading.Lock()
_engine_lock = threading.Lock()


def _get_engine() -> RapidOCR:
    global _engine
    if _engine is None:
        with _engine_load_lock:
            if _engine is None:
                _engine = _load_engine()
    return _engine


def _load_engine() -> RapidOCR:
    if _TELEMETRY_SET_TOO_LATE:
        logger.warning(
            "onnxruntime was imported before bot.ocr without ORT_DISABLE_TELEMETRY=1 in the "
            "environment, so its telemetry may be on. Set the variable before Python starts."
        )
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"

    import rapidocr
    from rapidocr import RapidOCR

    _quiet_rapidocr_logger()

    model_dir = Path(rapidocr.__file__).resolve().parent / "models"
    det_model = model_dir / _DET_MODEL
    rec_model = model_dir / _REC_MODEL
    for model in (det_model, rec_model):
        if not model.is_file():
            # Checked here so that the error message names the fix.
            raise RuntimeError(
                f"OCR model not found: {model}. "
                "Reinstall rapidocr==3.10.0, whose wheel contains it."
            )

    params = dict(_ENGINE_PARAMS)
    params["Det.model_path"] = str(det_model)
    params["Rec.model_path"] = str(rec_model)
    started = time.perf_counter()
    engine = RapidOCR(params=params)
    _quiet_rapidocr_logger()
    logger.info("OCR engine loaded in %.2f s", time.perf_counter() - started)
    return engine


def _quiet_rapidocr_logger() -> None:
    # rapidocr logs through its own "RapidOCR" logger with a console handler, at INFO on every
    # model load and at WARNING for every image without text. Keep only errors and hand them to
    # the application's logging configuration.
    rapidocr_logger = logging.getLogger("RapidOCR")
    for handler in list(rapidocr_logger.handlers):
        rapidocr_logger.removeHandler(handler)
    rapidocr_logger.setLevel(logging.ERROR)
    rapidocr_logger.propagate = True


# ---- reading order --------------------------------------------------------------------------


def _lines_in_reading_order(output: object) -> tuple[str, ...]:
    from rapidocr.utils.output import RapidOCROutput

    if not isinstance(output, RapidOCROutput) or not output.txts or output.boxes is None:
        return ()

    boxes: list[list[list[float]]] = output.boxes.tolist()
    order = _reading_order(boxes)
    texts = (output.txts[i].strip() for i in order)
    return tuple(text for text in texts if text)


def _reading_order(boxes: list[list[list[float]]]) -> list[int]:
    """Return box indices sorted top to bottom, then left to right within a line.

    Each box is four (x, y) corners clockwise from the top left. Photos are often tilted, so
    the box centres are first rotated by the median tilt of the boxes' top edges. Boxes whose
    centres are then closer vertically than half the median box height share a line.
    """
    if not boxes:
        return []

    tilts = [math.atan2(box[1][1] - box[0][1], box[1][0] - box[0][0]) for box in boxes]
    tilt = statistics.median(tilts)
    cos_t, sin_t = math.cos(tilt), math.sin(tilt)

    centres: list[tuple[float, float]] = []
    heights: list[float] = []
    for box in boxes:
        cx = sum(point[0] for point in box) / 4
        cy = sum(point[1] for point in box) / 4
        centres.append((cx * cos_t + cy * sin_t, -cx * sin_t + cy * cos_t))
        heights.append(math.dist(box[0], box[3]))
    same_line = statistics.median(heights) / 2

    by_y = sorted(range(len(boxes)), key=lambda i: centres[i][1])
    lines: list[list[int]] = []
    for index in by_y:
        if lines and centres[index][1] - centres[lines[-1][0]][1] <= same_line:
            lines[-1].append(index)
        else:
            lines.append([index])

    return [index for line in lines for index in sorted(line, key=lambda i: centres[i][0])]

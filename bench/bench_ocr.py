"""Measure bot.ocr: seconds per image and the peak memory of a process that reads images.

Each figure comes from a fresh child process, so the numbers do not include this script's own
memory. One child imports bot.ocr and reads every image in the evaluation folder ROUNDS times
after one untimed warm-up read. The other child only imports bot.ocr.

Usage: python bench/bench_ocr.py [--images DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO_ROOT.parent / "shared" / "eval" / "images"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


def peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure_import() -> dict[str, float]:
    import bot.ocr  # noqa: F401

    return {"peak_rss_mb": peak_rss_mb()}


def measure_reads(image_dir: Path, rounds: int) -> dict[str, object]:
    import time

    from bot.ocr import read_image

    images = [p.read_bytes() for p in sorted(image_dir.iterdir()) if p.suffix in IMAGE_SUFFIXES]
    if not images:
        raise SystemExit(f"no images found in {image_dir}")

    started = time.perf_counter()
    read_image(images[0])
    first_read = time.perf_counter() - started

    seconds = [read_image(data).seconds for _ in range(rounds) for data in images]
    return {
        "images": len(images),
        "reads": len(seconds),
        "first_read_s": first_read,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_child(mode: str, image_dir: Path, rounds: int) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), ORT_DISABLE_TELEMETRY="1")
    command = [sys.executable, __file__, "--child", mode, "--images", str(image_dir)]
    command += ["--rounds", str(rounds)]
    child = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise SystemExit(f"{mode} child failed with exit code {child.returncode}:\n{child.stderr}")
    result: dict[str, object] = json.loads(child.stdout)
    return result


def percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of images")
    parser.add_argument("--rounds", type=int, default=4, help="times each image is read")
    parser.add_argument("--child", choices=["import", "read"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "import":
        print(json.dumps(measure_import()))
        return
    if args.child == "read":
        print(json.dumps(measure_reads(args.images, args.rounds)))
        return

    reads = run_child("read", args.images, args.rounds)
    imported = run_child("import", args.images, args.rounds)
    seconds = reads["seconds"]
    assert isinstance(seconds, list)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, images from {args.images}")
    print(f"{reads['images']} images x {args.rounds} rounds = {reads['reads']} timed reads")
    print(f"engine load + first read: {reads['first_read_s']:.2f} s (not timed below)")
    print(
        f"seconds per image: p50 {percentile(seconds, 50):.3f}  "
        f"p99 {percentile(seconds, 99):.3f}  max {max(seconds):.3f}"
    )
    print(f"peak RSS, process that read images:           {reads['peak_rss_mb']:.0f} MB")
    print(f"peak RSS, process that imported bot.ocr only: {imported['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()

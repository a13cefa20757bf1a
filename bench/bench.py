"""Core latency and memory: answering vs tokenizing alone, cold start, two-turn conversations.

Prints figures; it asserts nothing. Run with `make bench` (all of bench/*.py in turn).
"""

from __future__ import annotations

import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MESSAGES = 500
SEED = 20261204


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
    return ordered[index]


def cold_start() -> float:
    code = (
        "import time; t=time.perf_counter();"
        "from bot.knowledge import load; from bot.assistant import Assistant;"
        "from bot.models import Message;"
        "a=Assistant(load('knowledge'));"
        "a.respond(Message(channel='web', user='u', text='暗証番号が間違っております。'));"
        "print(time.perf_counter()-t)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(output.stdout.strip())


def varied_messages(kb: object) -> list[str]:
    from bot.knowledge import KnowledgeBase

    assert isinstance(kb, KnowledgeBase)
    pool: list[str] = []
    for error in kb.errors:
        pool.extend(error.screen_texts)
        pool.extend(error.examples)
    for topic in kb.topics:
        pool.extend(topic.examples)
    pool.extend(["こんにちは", "ありがとう", "エラーが出た", "今日は寒いですね"])
    rng = random.Random(SEED)
    noise = ["", "😅", "。", "\n", "  ", "コンビニで", "すみません、"]
    return [rng.choice(noise) + rng.choice(pool) + rng.choice(noise) for _ in range(MESSAGES)]


def main() -> None:
    cold = cold_start()

    from bot.assistant import Assistant
    from bot.knowledge import load
    from bot.models import Message
    from bot.normalize import normalize
    from bot.tokenize import tokenize

    kb = load(ROOT / "knowledge")
    assistant = Assistant(kb)
    texts = varied_messages(kb)

    tokenize_ms = []
    for text in texts:
        started = time.perf_counter()
        tokenize(normalize(text))
        tokenize_ms.append((time.perf_counter() - started) * 1000)

    answer_ms = []
    for number, text in enumerate(texts):
        started = time.perf_counter()
        assistant.respond(Message(channel="web", user=f"bench-{number}", text=text))
        answer_ms.append((time.perf_counter() - started) * 1000)

    two_turn_ms = []
    for number in range(100):
        user = f"two-{number}"
        started = time.perf_counter()
        first = assistant.respond(
            Message(channel="web", user=user, text="ご利用いただけないカードです")
        )
        answer = first.choices[0] if first.choices else "はい"
        assistant.respond(Message(channel="web", user=user, text=answer))
        two_turn_ms.append((time.perf_counter() - started) * 1000)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    p50_a, p99_a = percentile(answer_ms, 50), percentile(answer_ms, 99)
    p50_t, p99_t = percentile(tokenize_ms, 50), percentile(tokenize_ms, 99)
    print(f"messages: {len(texts)} (mean length {statistics.mean(map(len, texts)):.0f} chars)")
    print(f"answer   p50 {p50_a:7.2f} ms   p99 {p99_a:7.2f} ms")
    print(f"tokenize p50 {p50_t:7.2f} ms   p99 {p99_t:7.2f} ms")
    print(f"ratio    p50 {p50_a / p50_t:7.1f}      p99 {p99_a / p99_t:7.1f}   (goal: p99 <= 3)")
    p50_c, p99_c = percentile(two_turn_ms, 50), percentile(two_turn_ms, 99)
    print(f"two-turn p50 {p50_c:7.2f} ms   p99 {p99_c:7.2f} ms")
    print(f"cold start to first reply: {cold:.2f} s")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

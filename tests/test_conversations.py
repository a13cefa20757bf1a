"""Scripted diagnosis conversations written as test data: the right cause within 2 questions."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.assistant import Assistant
from bot.knowledge import KnowledgeBase
from bot.store import MemoryStore
from tests.harness import Conversation

SCRIPTS = Path(__file__).resolve().parent / "data" / "conversations.yaml"
MIN_SOLVED = 0.95
MAX_QUESTIONS = 2


@dataclass
class Result:
    id: str
    solved: bool
    transcript: list[str]


def load_scripts() -> list[dict[str, Any]]:
    data = yaml.safe_load(SCRIPTS.read_text(encoding="utf-8"))
    scripts: list[dict[str, Any]] = data["conversations"]
    return scripts


def run(assistant: Assistant, script: dict[str, Any]) -> Result:
    talk = Conversation(assistant, user=script["id"])
    transcript: list[str] = []
    questions = 0
    solved = True
    for turn in script["turns"]:
        reply = talk.say(turn["say"])
        questions = 0 if reply.kind == "notice" else questions + (reply.kind == "question")
        transcript.append(f"> {turn['say']}\n< [{reply.kind} {reply.error_id}/{reply.cause_id}]")
        expected = turn.get("expect_kind")
        if isinstance(expected, list):
            allowed = expected
        elif expected:
            allowed = [expected]
        else:
            allowed = None
        if allowed and reply.kind not in allowed:
            solved = False
    last = talk.replies[-1]
    final = script["turns"][-1]
    solved = solved and last.kind == "answer" and last.cause_id == final["expect_cause"]
    return Result(script["id"], solved and questions <= MAX_QUESTIONS, transcript)


def test_scripts_are_well_formed() -> None:
    scripts = load_scripts()
    assert scripts
    for script in scripts:
        assert script["turns"][-1]["expect_cause"], script["id"]


def test_conversations_reach_cause(kb: KnowledgeBase) -> None:
    assistant = Assistant(kb, MemoryStore())
    results = [run(assistant, script) for script in load_scripts()]
    failed = [r for r in results if not r.solved]
    report = "\n\n".join(f"{r.id}\n" + "\n".join(r.transcript) for r in failed)
    assert len(failed) <= (1 - MIN_SOLVED) * len(results), report


@pytest.mark.parametrize("script", load_scripts(), ids=lambda s: s["id"])
def test_conversation_never_crashes(kb: KnowledgeBase, script: dict[str, Any]) -> None:
    result = run(Assistant(kb, MemoryStore()), script)
    assert result.transcript

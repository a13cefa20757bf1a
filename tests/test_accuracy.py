"""First-reply accuracy over labelled queries, held to fixed thresholds."""

from pathlib import Path

import pytest

from bot.assistant import Assistant
from bot.knowledge import KnowledgeBase
from bot.store import MemoryStore
from tests.evaluation import DEV_QUERIES, Outcome, first_replies, load_rows

OWN_QUERIES = Path(__file__).resolve().parent / "data" / "queries.tsv"

MIN_IDENTIFIED = 0.97
MIN_DECLINED = 0.95
MAX_WRONG = 0.01


def outcomes_for(kb: KnowledgeBase, path: Path) -> list[Outcome]:
    if not path.exists():
        pytest.skip(f"{path} is missing; it sits beside the repository in the shared folder")
    return first_replies(Assistant(kb, MemoryStore()), load_rows(path))


def describe(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"{o.row.id} expected={o.row.expected} got={o.reply.kind}:{o.reply.error_id}/"
        f"{o.reply.cause_id} text={o.row.text[:40]!r}"
        for o in outcomes
    )


@pytest.fixture(scope="module", params=[DEV_QUERIES, OWN_QUERIES], ids=["dev", "own"])
def outcomes(request: pytest.FixtureRequest, kb: KnowledgeBase) -> list[Outcome]:
    return outcomes_for(kb, request.param)


def test_kiosk_message_identified(outcomes: list[Outcome]) -> None:
    in_scope = [o for o in outcomes if o.row.in_scope]
    missed = [o for o in in_scope if not o.identified]
    assert len(missed) <= (1 - MIN_IDENTIFIED) * len(in_scope), describe(missed)


def test_out_of_scope_declined(outcomes: list[Outcome]) -> None:
    out_of_scope = [o for o in outcomes if o.row.expected == "oos"]
    answered = [o for o in out_of_scope if not o.declined]
    assert len(answered) <= (1 - MIN_DECLINED) * len(out_of_scope), describe(answered)


def test_confidently_wrong_rare(outcomes: list[Outcome]) -> None:
    wrong = [o for o in outcomes if o.confidently_wrong]
    assert len(wrong) <= MAX_WRONG * len(outcomes), describe(wrong)


def test_vague_report_asks_for_screen(outcomes: list[Outcome]) -> None:
    vague = [o for o in outcomes if o.row.expected == "?"]
    not_asked = [o for o in vague if o.reply.kind != "question" or o.reply.error_id]
    assert not not_asked, describe(not_asked)

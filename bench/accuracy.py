"""First-reply accuracy on labelled queries, with every miss listed (use -v for every row).

Usage: python bench/accuracy.py [-v] [TSV ...]   (default: the shared dev set and tests/data)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.assistant import Assistant  # noqa: E402
from bot.knowledge import load  # noqa: E402
from tests.evaluation import DEV_QUERIES, Outcome, first_replies, load_rows  # noqa: E402

OWN_QUERIES = ROOT / "tests" / "data" / "queries.tsv"


def is_miss(outcome: Outcome) -> bool:
    row = outcome.row
    if outcome.confidently_wrong:
        return True
    if row.in_scope:
        return not outcome.identified
    return row.expected == "oos" and not outcome.declined


def report(path: Path, verbose: bool) -> None:
    outcomes = first_replies(Assistant(load(ROOT / "knowledge")), load_rows(path))
    in_scope = [o for o in outcomes if o.row.in_scope]
    out_of_scope = [o for o in outcomes if o.row.expected == "oos"]
    identified = sum(o.identified for o in in_scope)
    declined = sum(o.declined for o in out_of_scope)
    wrong = sum(o.confidently_wrong for o in outcomes)
    print(f"== {path}")
    print(
        f"identified {identified}/{len(in_scope)}  out-of-scope declined "
        f"{declined}/{len(out_of_scope)}  confidently wrong {wrong}/{len(outcomes)}"
    )
    for outcome in outcomes:
        miss = is_miss(outcome)
        if not (miss or verbose):
            continue
        reply = outcome.reply
        top = " ".join(f"{c.error_id}:{c.score:.2f}" for c in reply.candidates[:3])
        print(
            f"{'MISS' if miss else '    '} {outcome.row.id} expected={outcome.row.expected:10} "
            f"got={reply.kind}:{reply.error_id}/{reply.cause_id} [{top}] {outcome.row.text[:50]!r}"
        )


def main(argv: list[str]) -> None:
    verbose = "-v" in argv
    paths = [Path(a) for a in argv if a != "-v"] or [DEV_QUERIES, OWN_QUERIES]
    for path in paths:
        if path.exists():
            report(path, verbose)
        else:
            print(f"== {path}: missing, skipped")


if __name__ == "__main__":
    main(sys.argv[1:])

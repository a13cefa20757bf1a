import sys, time

sys.path.insert(0, "tests")
from bot.knowledge import load
from bot.assistant import Assistant
from evaluation import load_rows, first_replies

kb = load("knowledge")
a = Assistant(kb)
rows = load_rows()
t = time.time()
outs = first_replies(a, rows)
ins = [o for o in outs if o.row.in_scope]
oos = [o for o in outs if o.row.expected == "oos"]
print(
    f"identified {sum(o.identified for o in ins)}/{len(ins)}  oos declined {sum(o.declined for o in oos)}/{len(oos)}  wrong {sum(o.confidently_wrong for o in outs)}/{len(outs)}  {time.time() - t:.1f}s"
)
for o in outs:
    bad = (
        (o.row.in_scope and not o.identified)
        or o.confidently_wrong
        or (o.row.expected == "oos" and not o.declined)
    )
    if bad or "-v" in sys.argv:
        c = " ".join(f"{x.error_id}:{x.score:.2f}" for x in o.reply.candidates[:3])
        print(
            ("BAD " if bad else "    ")
            + f"{o.row.id} exp={o.row.expected:8} got={o.reply.kind}:{o.reply.error_id}/{o.reply.cause_id} [{c}] {o.row.text[:50]!r}"
        )

"""One measurement of a labelled set: core and all-eight macro-F1, exact match, request recall,
non-requests read as requests (and as erasure), exact match per language group.

Usage: .venv/bin/python bench/blind_first_measure.py tests/data/heldout_f.jsonl …
It is how the first (pre-tuning) figures of sets F and G in tests/data/README.md were taken."""
import json, sys
from collections import defaultdict
from assistant.config import load_settings
from assistant.understand.pipeline import understand_text
CORE = ["access", "erasure", "portability", "opt_out"]
ALL = CORE + ["rectification", "restriction", "objection", "question"]
conf = load_settings(None)
def f1(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0; r = tp / (tp + fn) if tp + fn else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0
for path in sys.argv[1:]:
    rows = [json.loads(l) for l in open(path) if l.strip()]
    stats = defaultdict(lambda: [0, 0, 0]); exact = 0; req = req_hit = 0; neg = neg_fp = neg_erasure = 0; unclear_neg = 0
    groups = defaultdict(lambda: [0, 0])
    for r in rows:
        org = conf.organization_for_address(r["to"])
        res = understand_text(r["body"], subject=r["subject"], default_language=org.language if org else "nb")
        gold, pred = set(r["intents"]), set(res.intents)
        exact += gold == pred
        for i in ALL:
            if i in gold and i in pred: stats[i][0] += 1
            elif i in pred: stats[i][1] += 1
            elif i in gold: stats[i][2] += 1
        grp = r["language"] if r["language"] in ("nb","nn","en","sv","da") else "other"
        groups[grp][0] += 1; groups[grp][1] += gold == pred
        if gold:
            req += 1; req_hit += bool(pred)
        else:
            neg += 1; neg_fp += bool(pred); neg_erasure += "erasure" in pred; unclear_neg += res.unclear
    core = sum(f1(*stats[i]) for i in CORE) / 4; alll = sum(f1(*stats[i]) for i in ALL) / 8
    print(f"{path}: n={len(rows)} core macro-F1 {core:.3f} all-eight {alll:.3f} exact {exact/len(rows):.3f} "
          f"request recall {req_hit/req:.3f} ({req_hit}/{req}) negatives read as requests {neg_fp}/{neg} "
          f"(as erasure {neg_erasure}); exact by language group: " +
          ", ".join(f"{g} {c[1]/c[0]:.2f} ({c[0]})" for g, c in sorted(groups.items())))

"""Train the learned model and its arbiter (intents/learned.npz) and print honest figures.

    .venv/bin/python bench/train_learned.py            # report, then train on all and save
    .venv/bin/python bench/train_learned.py --cv-only  # report only
    .venv/bin/python bench/train_learned.py --no-cv    # train on all and save

Two parts, both logistic regressions (scikit-learn, the `train` extra):
- the model: words, stems and word pairs -> each intent, trained on every labelled set named in
  TRAINING (never a blind set still to be measured: those are kept outside this repository)
  plus the real request letters when ../shared is present;
- the arbiter: per intent, the lexicons' reading and the model's probability -> the decision.
  It must learn how the lexicons behave on mail they were not tuned on, so it is trained only
  on ARBITER_SETS (sets whose errors were never read to edit a lexicon), each scored by a model
  trained without that set.

The report is leave-one-set-out over ARBITER_SETS for the whole classifier (the model without
the held set, the arbiter without it), at each candidate ARBITER_AT; the best mean core
macro-F1 is saved as the arbiter's threshold. Bodies are cut to their new text exactly as
production does before scoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from assistant.config import load_settings  # noqa: E402
from assistant.understand.intents import Classification, read  # noqa: E402
from assistant.understand.learned import ARBITER_INPUTS, DEFAULT_MODEL, INTENTS, LearnedModel, train  # noqa: E402
from assistant.understand.pipeline import MAX_SCORED_CHARS, arbiter_inputs, second_opinion  # noqa: E402
from assistant.understand.reply_parser import strip_quotes_and_signature  # noqa: E402

DATA = REPO / "tests" / "data"
# Every labelled set (A-M: F-I became development data on 2026-11-30 after their first figures,
# J and K on 2026-12-01 after their recorded figures, L and M the same day after theirs, P and Q
# on 2026-12-01 after theirs), the training sets N, O and T-Y written by others for training, the
# messages per language of people living in Norway, and our own examples per category from the
# tests (bench/category_examples.py).
TRAINING = ("labelled_messages", "heldout_b", "heldout_c", "heldout_d", "heldout_e", "heldout_f",
            "heldout_g", "heldout_h", "heldout_i", "heldout_j", "heldout_k", "heldout_l", "heldout_m",
            "heldout_p", "heldout_q", "train_n", "train_o", "train_t", "train_u", "train_v", "train_w",
            "train_x", "train_y", "train_aa", "train_ab", "train_ac", "train_ad", "languages_norway",
            "category_examples")
# Sets whose rows were never read to edit a lexicon: how the lexicons err on unseen mail.
ARBITER_SETS = ("heldout_p", "heldout_q", "train_t", "train_u", "train_v", "train_w", "train_x",
                "train_y", "train_aa", "train_ab", "train_ac", "train_ad")
# Erasure cannot be undone: its threshold weighs precision twice as much as recall (F0.5).
BETA = {"erasure": 0.5}
CANDIDATE_AT = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
ARBITER_C = 1.0
CORE = INTENTS[:4]


def load_sets(names: tuple[str, ...] = TRAINING) -> dict[str, list[dict]]:
    """The training rows by set name; "letters" are the rendered real request letters."""
    from classify import BLIND_SETS

    if blind := sorted(set(names) & set(BLIND_SETS)):
        raise SystemExit(f"{', '.join(blind)}: blind sets are measured, never trained on "
                         "(bench/classify.py BLIND_SETS)")
    sets: dict[str, list[dict]] = {}
    for name in names:
        with (DATA / f"{name}.jsonl").open(encoding="utf-8") as fh:
            sets[name] = [json.loads(line) for line in fh if line.strip()]
    try:
        from realworld_letters import render_letters

        sets["letters"] = render_letters()
    except Exception as exc:  # noqa: BLE001 - the letters are optional training data
        print(f"letters not used: {exc}", file=sys.stderr)
    return sets


def load_rows() -> list[dict]:
    return [row for rows in load_sets().values() for row in rows]


def cleaned(rows: list[dict]) -> list[dict]:
    return [{**r, "body": strip_quotes_and_signature((r.get("body") or "")[:MAX_SCORED_CHARS])}
            for r in rows]


def macro(rows: list[dict], preds: list[set[str]], labels: tuple[str, ...]) -> float:
    scores = []
    for label in labels:
        tp = sum(1 for r, p in zip(rows, preds) if label in r["intents"] and label in p)
        fp = sum(1 for r, p in zip(rows, preds) if label not in r["intents"] and label in p)
        fn = sum(1 for r, p in zip(rows, preds) if label in r["intents"] and label not in p)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return sum(scores) / len(scores)


class Scored:
    """One arbiter set's rows as the lexicons read them and as a model without the set does."""

    def __init__(self, rows: list[dict], model: LearnedModel) -> None:
        settings = load_settings(None)
        self.rows = cleaned(rows)
        self.model = model
        self.readings: list[tuple[Classification, list[str]]] = []
        for row in self.rows:
            org = settings.organization_for_address(row.get("to", ""))
            self.readings.append(read(row["body"], row.get("subject", ""),
                                      org.language if org else "nb"))
        self.probabilities = [model.probabilities(r.get("subject", ""), r["body"], words)
                              for r, (_, words) in zip(self.rows, self.readings)]

    def inputs(self, intent: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([arbiter_inputs(result, intent, p[intent])
                      for (result, _), p in zip(self.readings, self.probabilities)])
        y = np.array([intent in r["intents"] for r in self.rows])
        return x, y

    def decide(self, arbiter: np.ndarray, at: float | tuple[float, ...]) -> list[Classification]:
        model = replace(self.model, arbiter=arbiter, arbiter_at=at)
        return [second_opinion(result, r.get("subject", ""), r["body"], words, model=model)
                for r, (result, words) in zip(self.rows, self.readings)]


def fit_arbiter(scored: list[Scored]) -> np.ndarray:
    """Per intent, a logistic regression over ARBITER_INPUTS (the constant is its intercept)."""
    from sklearn.linear_model import LogisticRegression

    weights = np.zeros((len(INTENTS), len(ARBITER_INPUTS)))
    for k, intent in enumerate(INTENTS):
        x = np.vstack([s.inputs(intent)[0] for s in scored])
        y = np.concatenate([s.inputs(intent)[1] for s in scored])
        if y.all() or not y.any():
            weights[k, 0] = 10.0 if y.all() else -10.0
            continue
        fitted = LogisticRegression(C=ARBITER_C, max_iter=5000).fit(x[:, 1:], y)
        weights[k, 0] = fitted.intercept_[0]
        weights[k, 1:] = fitted.coef_[0]
    return weights


def figures(rows: list[dict], decided: list[Classification]) -> dict[str, float]:
    preds = [set(c.intents) for c in decided]
    requests = [i for i, r in enumerate(rows) if r["intents"]]
    negatives = [i for i, r in enumerate(rows) if not r["intents"]]
    return {
        "core": macro(rows, preds, CORE), "all": macro(rows, preds, INTENTS),
        "recall": sum(bool(preds[i]) for i in requests) / len(requests),
        "triaged": sum(bool(preds[i]) or decided[i].unclear for i in requests) / len(requests),
        "to_triage": sum(not preds[i] and decided[i].unclear for i in negatives),
        "as_request": sum(bool(preds[i]) for i in negatives),
        "as_erasure": sum("erasure" in preds[i] for i in negatives),
        "negatives": len(negatives),
    }


def report(sets: dict[str, list[dict]]) -> tuple[list[Scored], tuple[float, ...]]:
    """Leave-one-set-out over the arbiter sets: the figures at each candidate threshold, then
    each intent's own threshold (the best F1 of that intent over all held sets together, F0.5
    for erasure; a tie goes to the higher threshold), then the figures with those. Returns
    the scored sets and the thresholds in INTENTS order."""
    everything = [r for rows in sets.values() for r in rows]
    scored: dict[str, Scored] = {}
    for name in ARBITER_SETS:
        model = train(cleaned([r for n, rows in sets.items() if n != name for r in rows]))
        scored[name] = Scored(sets[name], model)
    print(f"leave-one-set-out over {', '.join(ARBITER_SETS)} ({len(everything)} training rows)")
    arbiters = {name: fit_arbiter([scored[n] for n in ARBITER_SETS if n != name])
                for name in ARBITER_SETS}
    counts: dict[float, dict[str, list[int]]] = {}
    for at in CANDIDATE_AT:
        counts[at] = {intent: [0, 0, 0] for intent in INTENTS}
        held_figures = []
        for name in ARBITER_SETS:
            held = scored[name]
            decided = held.decide(arbiters[name], at)
            held_figures.append(figures(held.rows, decided))
            for row, result in zip(held.rows, decided):
                for intent in INTENTS:
                    gold, got = intent in row["intents"], intent in result.intents
                    if gold or got:
                        counts[at][intent][0 if gold and got else 1 if got else 2] += 1
        print(_summary(f"at {at:.2f}", held_figures))
    best = tuple(max(CANDIDATE_AT, key=lambda at: (
        round(_f_beta(*counts[at][intent], BETA.get(intent, 1.0)), 3), at)) for intent in INTENTS)
    print("  chosen per intent: " + ", ".join(f"{i} {at:.2f}" for i, at in zip(INTENTS, best)))
    for name in ARBITER_SETS:
        held = scored[name]
        f = figures(held.rows, held.decide(arbiters[name], best))
        print(f"  {name}: core {f['core']:.3f} all {f['all']:.3f} recall {f['recall']:.3f} with "
              f"triage {f['triaged']:.3f}, non-requests as requests {f['as_request']}/"
              f"{f['negatives']} (erasure {f['as_erasure']}) to triage {f['to_triage']}")
    decided = {n: scored[n].decide(arbiters[n], best) for n in ARBITER_SETS}
    print(_summary("per intent", [figures(scored[n].rows, decided[n]) for n in ARBITER_SETS]))
    print(_triage_sources([(row, d) for n in ARBITER_SETS
                           for row, d in zip(scored[n].rows, decided[n])]))
    return list(scored.values()), best


def _triage_source(triage: str) -> str:
    """Which rule sent a message without intents to a person (pipeline.arbitrate, intents.read)."""
    if triage.startswith("possibly"):
        return "the arbiter's guess"
    if triage.startswith("the lexicons read"):
        return "set aside"
    if triage.startswith("written in"):
        return "language"
    if "cue" in triage:
        return "request cue"
    return "lexicon signal below the threshold"


def _triage_sources(decided: list[tuple[dict, Classification]]) -> str:
    """Requests kept for a person and non-requests sent to one, by the rule that did it: what
    each rule costs the person triaging against what it saves (the issue asks for both)."""
    kept: dict[str, list[int]] = {}
    for row, result in decided:
        if result.intents or not result.unclear:
            continue
        counts = kept.setdefault(_triage_source(result.triage), [0, 0])
        counts[0 if row["intents"] else 1] += 1
    return "  to a person, by rule (requests kept / non-requests sent): " + ", ".join(
        f"{rule} {r}/{n}" for rule, (r, n) in sorted(kept.items(), key=lambda kv: -sum(kv[1])))


def _f_beta(tp: int, fp: int, fn: int, beta: float) -> float:
    b2 = beta * beta
    return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp) if tp + fp + fn else 1.0


def _summary(label: str, held: list[dict[str, float]]) -> str:
    n = len(held)
    return (f"  {label}: mean core {sum(f['core'] for f in held) / n:.3f} (lowest "
            f"{min(f['core'] for f in held):.3f}), all {sum(f['all'] for f in held) / n:.3f}, "
            f"request recall with triage {sum(f['triaged'] for f in held) / n:.3f} (lowest "
            f"{min(f['triaged'] for f in held):.3f}), non-requests read as erasure "
            f"{sum(f['as_erasure'] for f in held)}, sent to triage "
            f"{sum(f['to_triage'] for f in held)} of {sum(f['negatives'] for f in held)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv-only", action="store_true", help="report, do not write the model")
    ap.add_argument("--no-cv", action="store_true",
                    help="no leave-one-set-out report; the arbiter threshold stays --at")
    ap.add_argument("--at", type=float, default=0.5, help="arbiter threshold with --no-cv")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    args = ap.parse_args(argv)
    sets = load_sets()
    if args.no_cv:
        scored = [Scored(sets[name], train(cleaned(
            [r for n, rows in sets.items() if n != name for r in rows]))) for name in ARBITER_SETS]
        at = args.at
    else:
        scored, at = report(sets)
    if args.cv_only:
        return 0
    rows = cleaned([r for rows in sets.values() for r in rows])
    model = replace(train(rows), arbiter=fit_arbiter(scored), arbiter_at=at)
    model.save(args.out)
    print(f"wrote {args.out} ({len(model.vocabulary)} features, {len(rows)} rows, arbiter at {at})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One measurement of labelled sets: core and all-eight macro-F1, exact match, request recall,
non-requests read as requests (and as erasure), exact match per language group, and (issue 18)
request recall counting a possible request sent to a person (unclear) and how many
non-requests that sends to a person.

Usage: .venv/bin/python bench/blind_first_measure.py tests/data/heldout_f.jsonl …
It is how the first (pre-tuning) figures of sets F and G in tests/data/README.md were taken;
a request counts as recognised when any intent is found.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field

from assistant.config import load_settings
from assistant.understand.pipeline import understand_text

CORE = ("access", "erasure", "portability", "opt_out")
ALL = CORE + ("rectification", "restriction", "objection", "question")
READ_LANGUAGES = ("nb", "nn", "en", "sv", "da")


@dataclass
class Tally:
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    rows: int = 0
    exact: int = 0
    requests: int = 0
    recognised: int = 0
    negatives: int = 0
    false_requests: int = 0
    false_erasure: int = 0
    triaged_requests: int = 0  # requests found or at least sent to a person (possible_request)
    triaged_negatives: int = 0  # non-requests without intents that a person must look at
    groups: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, row: dict, predicted: set[str], possible: bool = False) -> None:
        gold = set(row["intents"])
        self.rows += 1
        self.exact += gold == predicted
        for intent in ALL:
            slot = 0 if intent in gold and intent in predicted else 1 if intent in predicted \
                else 2 if intent in gold else None
            if slot is not None:
                self.counts[intent][slot] += 1
        group = row["language"] if row["language"] in READ_LANGUAGES else "other"
        self.groups[group][0] += 1
        self.groups[group][1] += gold == predicted
        if gold:
            self.requests += 1
            self.recognised += bool(predicted)
            self.triaged_requests += bool(predicted) or possible
        else:
            self.negatives += 1
            self.false_requests += bool(predicted)
            self.false_erasure += "erasure" in predicted
            self.triaged_negatives += possible and not predicted

    def macro(self, intents: tuple[str, ...]) -> float:
        return sum(f1(*self.counts[i]) for i in intents) / len(intents)


def f1(tp: int, fp: int, fn: int) -> float:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def measure(path: str) -> str:
    settings = load_settings(None)
    tally = Tally()
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        row = json.loads(line)
        org = settings.organization_for_address(row["to"])
        result = understand_text(row["body"], subject=row["subject"],
                                 default_language=org.language if org else "nb")
        tally.add(row, set(result.intents), bool(result.intents) or result.unclear)
    groups = ", ".join(f"{g} {c[1] / c[0]:.2f} ({c[0]})" for g, c in sorted(tally.groups.items()))
    return (f"{path}: n={tally.rows} core macro-F1 {tally.macro(CORE):.3f} "
            f"all-eight {tally.macro(ALL):.3f} exact {tally.exact / tally.rows:.3f} "
            f"request recall {tally.recognised / tally.requests:.3f} "
            f"({tally.recognised}/{tally.requests}) non-requests read as requests "
            f"{tally.false_requests}/{tally.negatives} (as erasure {tally.false_erasure}); "
            f"exact by language group: {groups}; with triage (unclear = a case for a person): "
            f"request recall {tally.triaged_requests / tally.requests:.3f} "
            f"({tally.triaged_requests}/{tally.requests}), non-requests to triage "
            f"{tally.triaged_negatives}/{tally.negatives}")


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(measure(argument))

"""Our own examples per category, from the tests, as training rows for the learned model.

The issue-18 tests (tests/test_issue18_*.py, tests/test_languages_norway.py) hold a few hundred
examples written for the categories of real inbox mail (a Lithuanian request for an alarm log,
"kan dere sørge for at jeg ikke ligger inne hos dere lenger?", a course sign-off that is no
erasure). The lexicons were taught them by hand; this teaches the learned model the same, so the
arbiter does not set aside a reading both should share. No row of any labelled set is among them.

    .venv/bin/python bench/category_examples.py   # rewrite tests/data/category_examples.jsonl

tests/test_category_examples.py fails when the file and the tests drift apart.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
OUT = TESTS / "data" / "category_examples.jsonl"
MODULES = ("test_issue18_categories", "test_issue18_families", "test_issue18_hi_families",
           "test_issue18_jk_families", "test_issue18_lm_families", "test_languages_norway")


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"_examples_{name}", TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(module: str, list_name: str, n: int, example: tuple) -> dict | None:
    """(name, subject, body, intents[, possible]) or (body, intents): the last set of
    intent names is the label, the last string the body, the one before it the subject
    when there are three or more strings (the first is then the example's name)."""
    strings = [x for x in example if isinstance(x, str)]
    labels = [x for x in example if isinstance(x, (set, frozenset))]
    if not strings or not labels:
        return None
    subject = strings[-2] if len(strings) >= 3 else ""
    return {"id": f"{module.removeprefix('test_')}:{list_name}:{n}", "subject": subject,
            "body": strings[-1], "intents": sorted(labels[-1])}


def collect() -> list[dict]:
    rows: list[dict] = []
    for name in MODULES:
        module = _module(name)
        for list_name, value in vars(module).items():
            if not (list_name.isupper() and isinstance(value, list)):
                continue
            for n, example in enumerate(value):
                if isinstance(example, tuple):
                    row = _row(name, list_name, n, example)
                    if row is not None:
                        rows.append(row)
    return rows


def main() -> int:
    rows = collect()
    with OUT.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({len(rows)} examples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""tests/data/category_examples.jsonl (training rows for the learned model) is exactly what
bench/category_examples.py collects from the issue-18 tests: a changed or new example in a
test must reach the model too, so the file is regenerated with the tests, never edited."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _collector():
    spec = importlib.util.spec_from_file_location("category_examples",
                                                  REPO / "bench" / "category_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_training_file_holds_exactly_the_examples_of_the_tests() -> None:
    collector = _collector()
    with collector.OUT.open(encoding="utf-8") as fh:
        stored = [json.loads(line) for line in fh if line.strip()]
    assert stored == collector.collect(), (
        "tests/data/category_examples.jsonl is out of date: run "
        ".venv/bin/python bench/category_examples.py, then bench/train_learned.py")


def test_every_example_has_a_body_and_known_intents() -> None:
    from assistant.vocabulary import INTENTS

    rows = _collector().collect()
    assert len(rows) > 300
    assert all(r["body"].strip() and set(r["intents"]) <= set(INTENTS) for r in rows)
    assert any(not r["intents"] for r in rows), "look-alikes (no intent) are examples too"

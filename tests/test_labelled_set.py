"""Integrity of the held-out labelled set and of the real-world letter renderer.

These tests never call the classifier: the set must stay a fair, independent measure of it.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from stdnum.no import fodselsnummer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "labelled_messages.jsonl"
LABELS = {
    "access", "erasure", "portability", "opt_out",
    "rectification", "restriction", "objection", "question",
}
LANGUAGES = {"nb", "nn", "en", "sv", "da"}
# Sets F and G (issue 18) also hold the languages of people living in Norway.
OTHER_LANGUAGES = {"pl", "lt", "uk", "ru", "ar", "so", "ti", "ro", "es", "tr", "mixed"}  # mixed: H, I
ADDRESSES = {
    "kundesenter@branninfo.no", "personvern@infracomfort.no", "personvern@plania.no",
    "post@proffsecurity.no", "post@bagges.no",
}
# Expected share of each language and allowed deviation (the mix of a real Norwegian inbox).
LANGUAGE_SHARE = {"nb": 0.55, "nn": 0.10, "en": 0.15, "sv": 0.10, "da": 0.10}
TOLERANCE = 0.04


def load_rows() -> list[dict]:
    rows = []
    for n, line in enumerate(DATA.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"blank line {n}"
        rows.append(json.loads(line))
    return rows


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_rows()


def test_rows_have_the_documented_fields(rows):
    for r in rows:
        assert set(r) == {"id", "subject", "body", "to", "intents", "language", "notes"}, r.get("id")
        assert all(isinstance(r[k], str) for k in ("id", "subject", "body", "to", "language", "notes"))
        assert isinstance(r["intents"], list)
        assert r["body"].strip(), r["id"]


def test_at_least_400_rows_with_unique_ids(rows):
    assert len(rows) >= 400
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), [i for i, c in Counter(ids).items() if c > 1]


def test_ids_match_their_language(rows):
    for r in rows:
        assert re.fullmatch(r"(nb|nn|en|sv|da)-\d{4}", r["id"]), r["id"]
        assert r["id"].split("-")[0] == r["language"], r["id"]


def test_labels_and_languages_are_in_the_vocabulary(rows):
    for r in rows:
        assert r["language"] in LANGUAGES, r["id"]
        assert set(r["intents"]) <= LABELS, (r["id"], r["intents"])
        assert len(r["intents"]) == len(set(r["intents"])), r["id"]
        assert r["to"] in ADDRESSES, r["id"]


def test_language_mix_is_roughly_a_norwegian_inbox(rows):
    counts = Counter(r["language"] for r in rows)
    for lang, share in LANGUAGE_SHARE.items():
        assert abs(counts[lang] / len(rows) - share) <= TOLERANCE, (lang, counts[lang])


def test_share_of_negatives_and_multi_intent(rows):
    none = sum(not r["intents"] for r in rows) / len(rows)
    multi = sum(len(r["intents"]) > 1 for r in rows) / len(rows)
    assert 0.35 <= none <= 0.45, none
    assert 0.10 <= multi <= 0.20, multi


def test_every_intent_is_represented(rows):
    counts = Counter(i for r in rows for i in r["intents"])
    for label in LABELS:
        assert counts[label] >= 15, (label, counts[label])


def test_every_address_and_language_has_negatives(rows):
    for lang in LANGUAGES:
        assert any(not r["intents"] for r in rows if r["language"] == lang), lang
    assert {r["to"] for r in rows} == ADDRESSES


def test_negatives_include_hard_ones_with_request_words(rows):
    """Hard negatives are the point: words like 'slett' or 'innsyn' used about orders or tenders."""
    trap = re.compile(
        r"slett|sletta|innsyn|avbestill|stopp|avmeld|meld deg av|unsubscribe|delete|radera|"
        r"avregistrera|slet|aktindsigt|afmeld|personopplysning|gdpr", re.I)
    hard = [r["id"] for r in rows if not r["intents"] and trap.search(r["subject"] + r["body"])]
    assert len(hard) >= 30, len(hard)


def test_no_valid_norwegian_national_id_numbers(rows):
    """Invented people only: no 11-digit run may be a valid fødselsnummer."""
    for r in rows:
        for run in re.findall(r"(?<!\d)\d{6}\s?\d{5}(?!\d)", r["subject"] + " " + r["body"]):
            assert not fodselsnummer.is_valid(run.replace(" ", "")), r["id"]


# ---------------------------------------------------------------- real-world letter renderer


def load_letters_module():
    spec = importlib.util.spec_from_file_location(
        "realworld_letters", REPO / "bench" / "realworld_letters.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("realworld_letters", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rl():
    return load_letters_module()


LEFTOVER = re.compile(r"[{}]|\[[^\[\]>\n]{1,40}>|</?italic>")


def write_template(root: Path, lang: str, name: str, text: str) -> Path:
    folder = root / "templates" / lang
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return root


def test_renderer_handles_nested_unclosed_and_optional_brackets(rl, tmp_path):
    root = write_template(tmp_path, "xx", "access-default.txt", (
        "Hello {name},\n\n"
        "I want a copy.[data_portability>\nIn JSON please[runs> for {runs_list}].]\n"
        "[optional: Keep this private.] See [this] link.\n\n"
        "[include_objection>Open flag that is never closed\n\n"
        "Next paragraph stays.[has_fields>\n{id_data}]\n"
        "{Description of the problem, e.g.: I got no answer within one month.}\n"
        "Stray } brace. <italic>all</italic> data\n"
    ))
    letters = {l["id"]: l for l in rl.render_letters(root)}
    assert set(letters) == {
        "xx/access-default", "xx/access-default+data_portability", "xx/access-default+runs",
        "xx/access-default+include_objection", "xx/access-default+has_fields",
    }
    off = letters["xx/access-default"]["body"]
    assert "JSON" not in off and "Open flag" not in off and "Next paragraph stays." in off
    assert "Keep this private." in off and "See [this] link." in off
    assert "I got no answer within one month." in off and "all data" in off
    on = letters["xx/access-default+data_portability"]
    assert "In JSON please." in on["body"] and on["intents"] == ["access", "portability"]
    assert "Open flag that is never closed" in letters["xx/access-default+include_objection"]["body"]
    assert "Next paragraph stays." in letters["xx/access-default+include_objection"]["body"]
    for letter in letters.values():
        assert not LEFTOVER.search(letter["body"].replace("[this]", "")), letter["id"]


def test_renderer_labels_follow_the_readme_table(rl, tmp_path):
    for name in ("erasure-x.txt", "objection-x.txt", "rectification-x.txt", "admonition.txt",
                 "complaint-y.txt", "unknown-kind.txt"):
        write_template(tmp_path, "en", name, "Text[include_objection> and object].\n")
    got = {l["id"]: l["intents"] for l in rl.render_letters(tmp_path)}
    assert got["en/erasure-x"] == ["erasure"]
    assert got["en/erasure-x+include_objection"] == ["erasure", "objection"]
    assert got["en/objection-x"] == ["opt_out"]
    assert got["en/rectification-x"] == ["rectification"]
    assert got["en/admonition"] == [] and got["en/complaint-y"] == []
    assert not any(k.startswith("en/unknown-kind") for k in got)


def test_renderer_finds_templates_through_env(rl, tmp_path, monkeypatch):
    write_template(tmp_path, "sv", "access-default.txt", "Jag begär tillgång.\n")
    monkeypatch.setenv("DSR_REALWORLD", str(tmp_path))
    assert [l["id"] for l in rl.render_letters()] == ["sv/access-default"]


def test_real_templates_render_cleanly(rl):
    try:
        templates = rl.templates_dir()
    except FileNotFoundError:
        pytest.skip("shared/realworld/datarequests not beside the repository")
    letters = rl.render_letters()
    ids = [l["id"] for l in letters]
    assert len(ids) == len(set(ids))
    rendered_files = {i.split("+")[0] for i in ids}
    assert rendered_files == {f"{p.parent.name}/{p.stem}" for p in templates.glob("*/*.txt")}
    for letter in letters:
        assert set(letter) == {"id", "language", "subject", "body", "intents"}
        assert not LEFTOVER.search(letter["body"]), letter["id"]
        assert len(letter["body"]) > 200, letter["id"]
    by_id = {l["id"]: l["intents"] for l in letters}
    assert by_id["en/access-default+data_portability"] == ["access", "portability"]
    assert by_id["en/erasure-default+include_objection"] == ["erasure", "objection"]
    assert by_id["de/erasure-katholische-kirche+include_objection"] == ["erasure", "objection"]


@pytest.mark.parametrize("path", sorted(DATA.parent.glob("heldout_*.jsonl")), ids=lambda p: p.stem)
def test_every_held_out_set_follows_the_format(path):
    """Sets B, C, D, ... use set A's format and labels (tests/data/README.md)."""
    ids = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        assert row["id"] not in ids, f"line {n}: duplicate id"
        ids.add(row["id"])
        assert set(row["intents"]) <= LABELS, f"line {n}"
        assert row["language"] in LANGUAGES | OTHER_LANGUAGES, f"line {n}"
        assert row["to"] in ADDRESSES, f"line {n}"
        assert isinstance(row["subject"], str) and row["body"].strip(), f"line {n}"
    assert len(ids) >= 200


def test_no_blind_set_is_trained_on_or_tuned_against():
    """R and S (tests/data/README.md) are measured once per round with aggregates only: the
    model, the arbiter and the per-set error lists of bench/ must never see them."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import classify
        import leave_one_out
        import train_learned
    finally:
        sys.path.remove(str(REPO / "bench"))
    blind = set(classify.BLIND_SETS)
    assert blind and all((DATA.parent / f"{name}.jsonl").exists() for name in blind)
    assert not blind & set(train_learned.TRAINING)
    assert not blind & set(train_learned.ARBITER_SETS)
    assert not blind & set(leave_one_out.DEFAULT_HELD)
    with pytest.raises(SystemExit, match="never trained on"):
        train_learned.load_sets(("heldout_b", *sorted(blind)))

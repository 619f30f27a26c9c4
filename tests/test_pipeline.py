"""Understanding end to end: quotes cut, lexicons first, the learned model and its arbiter weigh them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from assistant.understand import learned, pipeline
from assistant.understand.pipeline import second_opinion, understand_text


@pytest.fixture
def toy_model(monkeypatch):
    """A model trained on made-up words, so the test does not depend on the shipped weights."""
    rows = [{"subject": "", "body": f"zorblat {filler}", "intents": ["erasure"]}
            for filler in ("alt", "meg", "kontoen", "data", "nå", "takk")]
    rows += [{"subject": "", "body": f"vanlig bestilling {filler}", "intents": []}
             for filler in ("alt", "meg", "kontoen", "data", "nå", "takk")]
    model = learned.train(rows)
    monkeypatch.setattr(pipeline, "load_model", lambda: model)
    return model


def test_the_learned_model_adds_an_intent_the_lexicons_missed(toy_model):
    result = understand_text("zorblat alt sammen")
    assert result.intents == ("erasure",)
    erasure = next(s for s in result.scores if s.intent == "erasure")
    assert any(e.startswith("learned: ") and "zorblat" in e for e in erasure.evidence)
    assert not result.unclear


def test_the_learned_model_never_removes_what_the_lexicons_found(toy_model):
    result = understand_text("Jeg ber om innsyn i alle personopplysninger dere har om meg.")
    assert "access" in result.intents


def test_without_a_model_file_the_lexicons_work_alone(monkeypatch):
    monkeypatch.setattr(pipeline, "load_model", lambda: None)
    assert understand_text("Jeg ber om innsyn i personopplysningene mine.").intents == ("access",)


def test_a_model_survives_saving_and_loading(tmp_path: Path):
    rows = [{"subject": "", "body": "zorblat", "intents": ["erasure"]},
            {"subject": "", "body": "zorblat igjen", "intents": ["erasure"]},
            {"subject": "", "body": "ordre levering", "intents": []},
            {"subject": "", "body": "ordre levering igjen", "intents": []}]
    model = learned.train(rows, min_count=1)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = learned.load_model(path)
    before = model.probabilities("", "zorblat")["erasure"]
    after = loaded.probabilities("", "zorblat")["erasure"]
    assert abs(before - after) < 0.01 and after > 0.5


@pytest.mark.parametrize(
    "text",
    [
        "Hei, jeg slettet ordrebekreftelsen ved et uhell. Kan dere sende den på nytt?",
        "Stopp levering av ordre 55123, jeg har funnet varen billigere.",
        "Kan dere slette den gamle fakturaen og sende en ny med riktig beløp?",
        "Hvor blir det av pakken min? Sporingen har stått stille i fire dager.",
        "Vi ønsker innsyn i anbudsdokumentene for rammeavtalen om brannslukkere.",
        "Takk for raskt svar, da er alt i orden.",
    ],
)
def test_look_alikes_stay_none_through_the_whole_pipeline(text):
    """With the shipped model switched on, shop mail that only looks like a request."""
    assert understand_text(text).intents == ()


def test_quoted_mail_does_not_count():
    body = ("Takk, det var alt jeg lurte på.\n\n"
            "Den tir. 3. nov. 2026 kl. 10:12 skrev Kari <kari@example.no>:\n"
            "> Jeg vil at dere sletter alle opplysninger om meg.\n")
    assert "erasure" not in understand_text(body).intents


def test_second_opinion_keeps_a_classification_without_model_signal(toy_model):
    base = understand_text("Hvor blir det av pakken min?")
    assert second_opinion(base, "", "Hvor blir det av pakken min?").intents == base.intents


@pytest.mark.parametrize(("subject", "body"), [
    ("Innsyn", "Hei. Jeg vil ha innsyn i opplysningene mine."),
    ("SV: Innsyn", "Ja, slett alt."),
    ("Sletting?", "hei"),
    ("", "İstanbul-kontoret: slett meg"),
])
def test_the_classifier_hands_the_learned_model_the_words_of_the_body(subject, body):
    """intents.read splits the text once for both readers; the model must see exactly the
    words it would have split from the body itself."""
    from assistant.understand.intents import read
    from assistant.understand.language import fold, tokens

    assert read(body, subject)[1] == tokens(fold(body))


@pytest.mark.parametrize(("subject", "body"), [
    ("Sletting", "Slett kontoen min og alle personopplysningene, takk."),
    ("SV: Innsyn", "Ja, send meg en kopi av dataene."),
    ("", "İstanbul-kontoret har §18 i art. 15(3) x_y"),
    ("Re: nyhetsbrev", ""),
])
def test_the_model_finds_by_lookup_exactly_the_features_it_was_trained_on(subject, body):
    """features() names what training counts; LearnedModel._rows finds the same rows without
    building names. If one learns a new kind of feature, this fails until the other does."""
    rows = [{"subject": subject, "body": body, "intents": ["erasure"]},
            {"subject": "", "body": "vanlig bestilling", "intents": []}]
    model = learned.train(rows, min_count=1)
    expected = sorted(model.vocabulary[f] for f in learned.features(subject, body))
    assert model._rows(subject, body) == expected


# --------------------------------------------------------------------------- the arbiter

def _arbiter_trusting(model_weight: float, lexicon_weight: float) -> np.ndarray:
    """Arbiter weights over learned.ARBITER_INPUTS: a constant of -lexicon_weight/2, so the
    lexicons' choice alone lands on one side of one half and the model's log-odds on the other."""
    row = [0.0] * len(learned.ARBITER_INPUTS)
    row[learned.ARBITER_INPUTS.index("constant")] = -lexicon_weight / 2
    row[learned.ARBITER_INPUTS.index("lexicon_chose")] = lexicon_weight
    row[learned.ARBITER_INPUTS.index("learned_log_odds")] = model_weight
    return np.array([row] * len(learned.INTENTS))


@pytest.fixture
def doubting_model(monkeypatch):
    """A toy model that learned "slett kontoen" in shop orders is not a request, with an
    arbiter that listens to it over the lexicons."""
    rows = [{"subject": "", "body": f"zorblat {w}", "intents": ["erasure"]}
            for w in ("alt", "meg", "data", "nå", "takk", "kontoen")]
    rows += [{"subject": "", "body": f"slett kontoen min og alle personopplysningene {w}",
              "intents": []} for w in ("alt", "meg", "data", "nå", "takk", "igjen") * 3]
    model = replace(learned.train(rows), arbiter=_arbiter_trusting(1.0, 0.1), arbiter_at=0.5)
    monkeypatch.setattr(pipeline, "load_model", lambda: model)
    return model


def test_the_arbiter_sets_aside_what_the_lexicons_read_and_a_person_sees_it(doubting_model):
    result = understand_text("Slett kontoen min og alle personopplysningene, takk.")
    assert result.intents == ()
    assert result.unclear and result.possible_request
    assert "erasure" in result.triage
    erasure = next(s for s in result.scores if s.intent == "erasure")
    assert any(e.startswith("set aside:") for e in erasure.evidence)


def test_the_arbiter_adds_what_only_the_model_knows(doubting_model):
    result = understand_text("zorblat alt sammen")
    assert result.intents == ("erasure",)
    erasure = next(s for s in result.scores if s.intent == "erasure")
    assert any(e.startswith("learned: ") and "zorblat" in e for e in erasure.evidence)


def test_an_arbiter_that_trusts_the_lexicons_keeps_their_reading(doubting_model, monkeypatch):
    trusting = replace(doubting_model, arbiter=_arbiter_trusting(0.0, 4.0))
    monkeypatch.setattr(pipeline, "load_model", lambda: trusting)
    assert understand_text("Slett kontoen min og alle personopplysningene, takk.").intents == (
        "erasure",)


def test_with_an_arbiter_a_not_request_phrase_still_settles_it(doubting_model):
    """An auto-reply is not a request, whatever the model guesses about its words."""
    result = understand_text("Automatisk svar: jeg er på ferie til 12. august. zorblat zorblat")
    assert result.not_request and result.intents == ()


def test_the_arbiter_survives_saving_and_loading(tmp_path: Path, doubting_model):
    path = tmp_path / "m.npz"
    doubting_model.save(path)
    loaded = learned.load_model(path)
    assert loaded.arbiter is not None and loaded.arbiter_at == pytest.approx(0.5)
    assert np.allclose(loaded.arbiter, doubting_model.arbiter, atol=1e-6)


def test_an_arbiter_of_another_version_is_refused_with_the_way_out(tmp_path: Path, doubting_model):
    path = tmp_path / "m.npz"
    doubting_model.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["arbiter_inputs"] = np.array(["constant", "something_else"])
    arrays["arbiter"] = arrays["arbiter"][:, :2]
    np.savez(path, **arrays)
    learned._load_model.cache_clear()
    with pytest.raises(ValueError, match="retrain"):
        learned.load_model(path)


def test_the_shipped_model_has_an_arbiter_that_was_measured():
    """bench/train_learned.py writes the arbiter and its threshold beside the model: the
    figures in tests/data/README.md are of the classifier with it."""
    model = learned.load_model()
    assert model is not None and model.arbiter is not None
    assert all(0.2 <= model.chosen_at[intent] <= 0.8 for intent in model.intents)


def test_thresholds_per_intent_survive_saving_and_loading(tmp_path: Path, doubting_model):
    """bench/train_learned.py picks each intent's own threshold (erasure's weighs precision)."""
    per_intent = tuple(0.3 + 0.05 * k for k in range(len(learned.INTENTS)))
    path = tmp_path / "m.npz"
    replace(doubting_model, arbiter_at=per_intent).save(path)
    loaded = learned.load_model(path)
    assert loaded.chosen_at == pytest.approx(dict(zip(learned.INTENTS, per_intent)))


def test_erasure_needs_its_own_higher_threshold(doubting_model, monkeypatch):
    """Each intent is held to its own threshold: with erasure's out of reach, the model's sure
    reading of "zorblat" as erasure is not chosen, and the message goes to a person."""
    at = tuple(1.01 if intent == "erasure" else 0.5 for intent in learned.INTENTS)
    strict = replace(doubting_model, arbiter_at=at)
    monkeypatch.setattr(pipeline, "load_model", lambda: strict)
    result = understand_text("zorblat alt sammen")
    assert "erasure" not in result.intents and result.unclear


@pytest.mark.parametrize("body", [
    "Slett kontoen min og alle personopplysningene, takk.",
    "Hei, kan dere sende meg en kopi av opptakene fra kameraet? Og slett dem etterpå.",
    "Automatisk svar: jeg er på ferie.",
    "Takk for svaret!",
])
def test_the_arbiter_in_line_weighs_exactly_what_training_saw(body):
    """pipeline sums the arbiter's weights in line for speed; training (bench/train_learned.py)
    builds arbiter_inputs. The two must give the same probabilities."""
    from assistant.understand.intents import read

    model = learned.load_model()
    result, words = read(body)
    probabilities = model.probabilities("", body, words)
    in_line = pipeline._arbiter_probabilities(result, model.log_odds("", body, words), model)
    for intent, p in probabilities.items():
        expected = model.arbitrate(intent, pipeline.arbiter_inputs(result, intent, p))
        assert in_line[intent] == pytest.approx(expected, abs=1e-9)

"""Understanding end to end: quotes cut, lexicons first, the learned model only adds."""

from __future__ import annotations

from pathlib import Path

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
    model = learned.train(rows, epochs=400, rate=4.0)
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
    model = learned.train(rows, min_count=1, epochs=300)
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
    model = learned.train(rows, min_count=1, epochs=1)
    expected = sorted(model.vocabulary[f] for f in learned.features(subject, body))
    assert model._rows(subject, body) == expected

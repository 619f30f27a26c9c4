"""Language detection: ordinary sentences in the five inbox languages and the letter languages."""

from __future__ import annotations

import pytest

from assistant.understand.language import detect_language, fold, load_profiles

SENTENCES = [
    ("nb", "Hei, jeg lurer på hvilke opplysninger dere har om meg, og hvor lenge dere lagrer dem."),
    ("nb", "Jeg har ikke fått svar på henvendelsen min, kan dere se på det nå?"),
    ("nb", "Vi har flyttet, og jeg vil gjerne at dere oppdaterer adressen vår i kunderegisteret."),
    ("nn", "Hei, eg lurer på kva opplysningar de har om meg, og kor lenge de tek vare på dei."),
    ("nn", "Eg har ikkje fått svar frå dykk enno, kan de sjå på det no?"),
    ("nn", "Eg vil gjerne ha ein kopi av opplysningane om meg."),
    ("da", "Hej, jeg vil gerne vide hvilke oplysninger I har om mig, og hvor længe I gemmer dem."),
    ("da", "Jeg har ikke fået svar på min henvendelse, kan I også kigge på det nu?"),
    ("da", "Med venlig hilsen, og tak for hjælpen med sletning af mine oplysninger."),
    ("sv", "Hej, jag undrar vilka personuppgifter ni har om mig och hur länge ni sparar dem."),
    ("sv", "Jag har inte fått något svar från er, kan ni titta på det nu?"),
    ("en", "Hello, I would like to know what personal data you hold about me and how long you keep it."),
    ("en", "I have not received a reply yet, could you please look into it?"),
    ("de", "Sehr geehrte Damen und Herren, bitte teilen Sie mir mit, welche Daten Sie über mich speichern."),
    ("fr", "Madame, Monsieur, je vous prie de me communiquer les données que vous détenez sur moi."),
    ("es", "Por favor, confirmen si están tratando mis datos personales y con qué finalidad."),
    ("it", "Vi chiedo di comunicarmi quali dati personali sono in vostro possesso."),
    ("nl", "Ik wil graag weten welke persoonsgegevens u van mij verwerkt."),
    ("pt", "Gostaria de saber quais dados pessoais vocês têm sobre mim."),
    ("cs", "Prosím o sdělení, jaké osobní údaje o mně zpracováváte."),
    ("ro", "Vă rog să-mi confirmați dacă prelucrați datele mele personale."),
    ("hr", "Molim vas da mi kažete koje osobne podatke o meni obrađujete."),
    ("el", "Παρακαλώ να μου πείτε ποια προσωπικά δεδομένα μου επεξεργάζεστε."),
]


@pytest.mark.parametrize("expected,text", SENTENCES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(SENTENCES)])
def test_ordinary_sentences(expected: str, text: str) -> None:
    code, confidence = detect_language(text)
    assert code == expected
    assert 0.0 < confidence <= 1.0


def test_norwegian_without_special_letters_is_still_norwegian() -> None:
    assert detect_language("Hei, jeg onsker at dere sletter opplysningene mine. Takk for hjelpen.")[0] == "nb"


@pytest.mark.parametrize("text", ["", "Hei", "OK", "Slett meg", "12345", "Takk!"])
def test_short_texts_get_the_default(text: str) -> None:
    assert detect_language(text, default="nb")[0] == "nb"
    assert detect_language(text, default="nn")[0] == "nn"


def test_short_text_confidence_is_low() -> None:
    _, confidence = detect_language("Hei", default="nb")
    assert confidence < 0.5


def test_close_call_between_norwegian_and_danish_goes_to_the_default() -> None:
    # Words shared by bokmål and Danish only: the organisation's default decides.
    text = "Jeg vil ikke det, men kan du se på det?"
    assert detect_language(text, default="nb")[0] == "nb"


def test_clear_foreign_text_overrides_the_default() -> None:
    assert detect_language("Please delete all the data you have about me, thank you.", default="nb")[0] == "en"


def test_profiles_cover_all_languages() -> None:
    codes = set(load_profiles().codes)
    assert {"nb", "nn", "da", "sv", "en", "de", "fr", "es", "it", "nl", "pt", "cs", "ro", "hr", "el"} <= codes


def test_fold_removes_diacritics_for_matching() -> None:
    assert fold("Personopplysningær ØÅ") == "personopplysningaer oa"
    assert fold("Löschung") == "loschung"
    assert fold("Άρθρο") == "αρθρο"


def test_no_character_outside_a_word_folds_into_a_word_character():
    """fold_words() splits first and folds each word; that equals folding first only because
    folding never turns punctuation or space into a letter. Checked for every code point."""
    import re
    import sys

    word_char = re.compile(r"[^\W_]|§")
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        if not word_char.fullmatch(char):
            assert not any(word_char.fullmatch(c) for c in fold(char)), hex(code)


@pytest.mark.parametrize("text", [
    "Slett ALT om meg. Takk!", "Innsyn i personopplysninger, jf. § 18 og art. 15(3)",
    "İstanbul-kontoret", "ΟΔΟΣ.Α ΣΟΦΟΣ", "ſlett x_y ÆØÅ æøå Ærlig", "", "...\n\n- punkt\n",
])
def test_folded_words_equal_folding_the_whole_text(text):
    from assistant.understand.intents import _SCAN
    from assistant.understand.language import fold_words, folded_tokens, tokens

    assert folded_tokens(text) == tokens(fold(text))
    words = fold_words(_SCAN.findall(text))  # sentence breaks among the tokens are left out
    assert words is None or words == tokens(fold(text))

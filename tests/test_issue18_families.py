"""Issue 18, second round: the phrasing families and look-alike classes found by reading the
errors of sets E, F and G by category (F and G became development data on 2026-11-30). Every
example here was written for its family; none is a row of a labelled set."""

from __future__ import annotations

import pytest

from assistant.understand.intents import classify
from assistant.understand.learned import LearnedModel
from assistant.understand.pipeline import second_opinion, understand_text

FAMILIES = [
    # (family, subject, body, expected intents)
    # staff notes report a request in the third person
    ("staff_3p_access", "#kundeservice", "Mann ringte (Per Olsen). Han vil vite hva vi har registrert på ham i kundeklubben.", {"access"}),
    ("staff_3p_source", "sentralbord", "Dame ringte, lurte på hvor vi hadde fått tak i mobilnummeret hennes. Ønsker svar på e-post.", {"access"}),
    ("staff_3p_optout", "butikk", "Kunde i kassa vil av lista for SMS-tilbud. Navn: Geir Lunde.", {"opt_out"}),
    ("staff_3p_optout_en", "#store", "Customer at the counter asked to be taken off the newsletter, both addresses.", {"opt_out"}),
    ("staff_3p_erasure", "#support", "Brukar ringde og vil ha fjerna namnet sitt frå forumet. Ho har slutta i kommunen.", {"erasure"}),
    ("staff_3p_objection_en", "#privacy", "Caller objects to us profiling his purchases for offers. Still wants the service.", {"objection"}),
    # where the data came from, in the Nordic languages
    ("source_nn", "", "Kvar har de fått e-postadressa mi frå? Eg har aldri handla hos dykk.", {"access"}),
    ("source_sv", "", "Var fick ni min adress ifrån? Jag har aldrig beställt något.", {"access"}),
    # other languages: missing phrasing families
    ("es_no_more_ads", "", "Hola, por favor no me envíen más publicidad por SMS. Gracias.", {"opt_out"}),
    ("ru_stop_mailing", "", "Здравствуйте, прошу прекратить присылать мне рекламную рассылку.", {"opt_out"}),
    ("ru_correct", "", "Здравствуйте, в моём профиле неправильный адрес. Исправьте, пожалуйста.", {"rectification"}),
    ("pl_which_data", "", "Dzień dobry, chciałbym wiedzieć, jakie moje dane przechowujecie. Pozdrawiam.", {"access"}),
    ("tr_which_data", "", "Merhaba, hakkımda hangi kişisel verileri sakladığınızı öğrenmek istiyorum.", {"access"}),
    ("sv_correct_name", "", "Hej, kan ni rätta mitt efternamn i kundregistret? Det är felstavat.", {"rectification"}),
    ("da_delete_profile", "", "Hej, slet venligst min brugerprofil hos jer. Venlig hilsen Ole", {"erasure"}),
    ("uk_infinitive_no_calls", "", "Добрий день. Прошу більше не телефонувати мені щодо знижок.", {"opt_out"}),
    ("pl_infinitive_no_calls", "", "Dzień dobry, proszę do mnie nie dzwonić w sprawie ofert.", {"opt_out"}),
    ("pl_delete_them", "", "Mam u was konto. Jakie dane o mnie macie? Potem proszę je wszystkie usunąć.", {"access", "erasure"}),
    ("da_off_mailing_list", "", "Fjern mig venligst fra jeres mailinglister, jeg vil ikke have flere tilbud.", {"opt_out"}),
    # look-alikes: bulk mail that is not to us
    ("third_party_newsletter_nb", "Personvernnytt", "PERSONVERNNYTT fra Advokatfirma AS. I denne utgaven: innsyn, sletting og dataportabilitet for netthandel. Meld deg av her.", set()),
    ("third_party_newsletter_en", "Privacy digest", "PRIVACY DIGEST #9. In this issue: handling access requests, erasure deadlines and portability. You are receiving this because you subscribed.", set()),
    ("gdpr_sales_pitch", "Er dere GDPR-klare?", "Hei! Trenger dere hjelp med innsynsrutiner og sletting? Book en gratis gjennomgang med oss i dag.", set()),
    ("fake_fine", "GDPR fine notice", "Your company has received an administrative fine for ignoring access requests. Payment must be made within 5 days.", set()),
    ("phishing_validate", "Mailbox", "Your mailbox must be re-validated. Failure to validate will result in permanent deletion of all personal data. Validate now.", set()),
    # look-alikes: a business's own systems and customers
    ("b2b_tenant_request", "", "Hi, one of our tenants has sent us a GDPR access request. How do we export what our database holds on him?", set()),
    ("b2b_tenant_request_nb", "", "Hei, vi har fått innsynskrav fra en leietaker. Hvilken rapport i Plania viser alt om ham?", set()),
    ("b2b_auto_anonymise", "", "Can Plania automatically anonymise former tenants' phone numbers after a year? We want it configured.", set()),
    # look-alikes: reminders, thanks, replies with what we asked for
    ("reminder_status_nb", "", "Hei, jeg viser til henvendelsen min om sletting i februar. Hvor langt har dere kommet?", set()),
    ("thanks_for_confirming_en", "", "Thanks for confirming that my account has been deleted. All good.", set()),
    ("id_reply", "SV: Bekreft identitet", "Her er kopi av passet mitt som dere ba om.", set()),
    # look-alikes: courses, operational SMS, invoices, receipts
    ("cancel_course_place", "", "Hei, jeg må melde av brukerkurset på tirsdag. Kollegaen min tar gjerne plassen.", set()),
    ("sv_cancel_webinar", "", "Hej, jag kan inte komma på webbinariet i morgon. Skicka gärna inspelningen efteråt.", set()),
    ("battery_sms_elsewhere", "", "Kan dere slutte å sende SMS om lavt batteri til meg og heller sende dem til vaktmesteren?", set()),
    ("receipt_copy", "", "Hei, kan jeg få kopi av kvitteringen for varmepumpa? Trenger den til forsikringen.", set()),
    ("test_record", "", "Forhandleren la inn en fiktiv testkunde for å prøve skjemaet. Slett den fra CRM.", set()),
    ("order_confirmation_copy", "", "Hei, har dere en kopi av ordrebekreftelsen på dekkene? Finner den ikke.", set()),
    ("alarm_sms_on_off", "", "Hei, dere må gjerne slutte å sende meg SMS hver gang alarmen slås av og på.", set()),
    ("phishing_deleted_in_hours", "Notice", "Your account will be deleted tonight. Click here to keep your data and your mailbox.", set()),
    ("ar_delete_words_between", "", "مرحبا، أطلب حذف كل بياناتي من نظامكم. شكرا", {"erasure"}),
    ("aside_before_command", "SV: sak 88", "Takk for svaret. Forresten, slett også det gamle mobilnummeret mitt.", {"erasure"}),
    ("what_you_keep_on_me", "", "Hello, could you let me know what details you keep on me?", {"access"}),
    ("thanks_for_deleting_nb", "", "Tusen takk for at dere slettet kontoen min så fort!", set()),
    ("event_invitation_with_rights", "Kurs", "Kurs om innsynsrett og sletting for styret – meld deg på i dag!", set()),
    ("company_acknowledgement", "Kvittering", "Takk for din henvendelse om sletting. Vi behandler saken innen 30 dager.", set()),
    ("how_to_bulletin_nb", "Nytt fra bransjen", "Slik svarer du på innsynskrav fra kunder, og slik sletter du gamle kundekort.", set()),
    ("how_to_bulletin_da", "Nyhedsbrev", "Sådan håndterer I anmodninger om indsigt og sletning. Afmeld her.", set()),
]


@pytest.mark.parametrize("name,subject,body,intents", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


@pytest.mark.parametrize("body", [
    "Third-party bulletin: in this issue, how to answer access and erasure requests. Unsubscribe | Manage preferences",
    "Your mailbox must be re-validated within 24 hours. Validate now or all data will be deleted.",
])
def test_bulk_mail_is_certainly_not_a_request(body: str) -> None:
    result = understand_text(body)
    assert not result.intents and not result.possible_request, result.explain()


@pytest.mark.parametrize("body,intents", [
    ("Jeg vil ha alt dere har om meg som en CSV-fil jeg kan ta med til en annen leverandør.", {"portability"}),
    ("Please send everything you hold about me as JSON so I can import it at my new provider.", {"portability"}),
    ("Jeg vil vite hva dere har lagret om meg. I tillegg ber jeg om kjøpshistorikken i et maskinlesbart format.",
     {"access", "portability"}),
])
def test_portability_covers_the_access_words_in_its_own_clause(body: str, intents: set[str]) -> None:
    """The lexicons' decision (the learned model may still add access; its training labels
    follow the same rule)."""
    result = classify(body)
    assert set(result.intents) == intents, result.explain()


def _model_saying(intent: str) -> LearnedModel:
    """A stand-in learned model that is sure of one intent whatever the text."""
    import numpy as np

    from assistant.vocabulary import INTENTS

    bias = np.array([8.0 if i == intent else -8.0 for i in INTENTS], dtype=np.float32)
    return LearnedModel({}, np.zeros((0, len(INTENTS)), dtype=np.float32), bias)


def test_the_model_does_not_add_erasure_over_a_firm_look_alike() -> None:
    text = "Hei, kan dere slette brukerkoden til den gamle vaskehjelpen i alarmen?"
    lexicons = classify(text)
    assert "erasure" in lexicons.lookalikes
    result = second_opinion(lexicons, "", text, model=_model_saying("erasure"))
    assert "erasure" not in result.intents
    assert result.unclear  # a person still sees it


def test_the_model_does_not_add_access_over_a_firm_access_look_alike() -> None:
    text = "Kan jeg få kopi av ordrebekreftelsen fra forrige uke?"
    lexicons = classify(text)
    assert "access" in lexicons.lookalikes
    result = second_opinion(lexicons, "", text, model=_model_saying("access"))
    assert "access" not in result.intents and result.unclear


def test_the_model_still_adds_what_the_lexicons_missed() -> None:
    text = "Kunne dere tenke dere å gjøre meg usynlig i systemene deres?"
    lexicons = classify(text)
    result = second_opinion(lexicons, "", text, model=_model_saying("erasure"))
    assert "erasure" in result.intents

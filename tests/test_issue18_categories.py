"""Issue 18: the kinds of inbox mail the classifier missed or was fooled by, one test per
category with examples written for it (never rows of a blind set), and "recall first":
a possible request goes to a person (unclear, possible_request), certain non-requests do not."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from assistant.cli import cli
from assistant.understand.pipeline import understand_text

CASES = [
 # (category, subject, body, expected intents, expect possible_request)
 ("source_number", "", "Hei. Hvor har dere fått nummeret mitt fra? Jeg har aldri vært kunde hos dere.", {"access"}, True),
 ("source_email", "", "Where did you get my e-mail address? I never signed up for anything from you.", {"access"}, True),
 ("source_nb_typed", "", "hvor fikk dere tak i epostadressen min fra??", {"access"}, True),
 ("camera_noncustomer", "Opptak", "Hei, jeg er ikke kunde hos dere, men jeg ble filmet av kameraet ved inngangen til butikken på lørdag. Jeg ber om å få opptakene av meg.", {"access"}, True),
 ("alarm_log", "", "Jeg bor i et sameie der dere har alarmen. Kan jeg få se loggen over når min brikke har vært brukt?", {"access"}, True),
 ("thread_new_request", "SV: Innsyn [REF-2026-0042]", "Takk for svaret. Nå vil jeg også at dere sletter alle opplysningene om meg etterpå.", {"erasure"}, True),
 ("reminder", "Purring", "Jeg sendte dere en forespørsel om innsyn for fem uker siden og har ikke fått svar. Jeg ber fortsatt om innsyn i opplysningene dere har om meg.", {"access"}, True),
 ("indirect", "", "Jeg vil gjerne vite hva dere egentlig har lagret om meg.", {"access"}, True),
 ("phone_typed", "", "hei vil at dere sleter all info om meg takk", {"erasure"}, True),
 ("da_aktindsigt", "Aktindsigt", "Jeg vil gerne have aktindsigt i de oplysninger I har om mig.", {"access"}, True),
 ("sv_radera", "", "Hej, radera mina uppgifter tack.", {"erasure"}, True),
 ("da_slet", "", "Hej, slet mine oplysninger. Mvh Jens", {"erasure"}, True),
 ("kundelisten", "", "Hei, kan dere fjerne meg fra kundelisten deres? Jeg handler ikke der lenger.", {"erasure"}, True),
 ("forget_me", "", "Please forget me. I don't want you to have anything about me anymore.", {"erasure"}, True),
 # look-alikes
 ("alarm_sms_off", "", "Hei, kan dere skru av SMS-varslingen når alarmen blir av- og påslått? Jeg får en melding hver morgen.", set(), None),
 ("cancel_course", "", "Hei, jeg må dessverre melde meg av kurset i brannvern på torsdag. Kan dere slette påmeldingen?", set(), None),
 ("cancel_webinar", "", "Please cancel my registration for the webinar next week, I can't attend.", set(), None),
 ("gdpr_phishing", "Viktig: GDPR-oppdatering", "Kjære kunde, på grunn av nye GDPR-regler må du bekrefte kontoen din innen 24 timer, ellers vil kontoen din bli stengt. Klikk på lenken for å bekrefte.", set(), False),
 ("gdpr_newsletter", "GDPR-nytt for bedrifter", "Du mottar denne e-posten fordi du abonnerer på vårt nyhetsbrev. I denne utgaven: fem ting om personvern du må vite i 2027.", set(), False),
 ("fdv_export", "", "Hei, vi er kunde av Plania og trenger å eksportere alle dokumentene våre i FDV-systemet til Excel. Hvordan gjør vi det?", set(), None),
 ("camera_autodelete", "", "Hvordan konfigurerer vi automatisk sletting av opptakene på kameraene i butikken etter 30 dager?", set(), None),
 ("invoice_copy", "", "Hei, kan jeg få en kopi av fakturaen fra mars? Mvh Ola", set(), None),
 ("alarm_code", "", "Hei, vi må slette brukerkoden til en tidligere ansatt i alarmsystemet.", set(), None),
 ("autoreply_thread", "Automatisk svar: Innsyn [REF-2026-0042]", "Jeg er fraværende til 14. juli. Henvendelser om innsyn og sletting besvares når jeg er tilbake.", set(), False),
 # genres
 ("staff_note", "", "Kunde ringte, vil ha alt slettet. Tlf 912 34 567.", {"erasure"}, True),
 ("staff_note_access", "", "Kunde var innom butikken i dag, ønsker kopi av alt vi har på ham.", {"access"}, True),
 ("form_fields", "Kontaktskjema", "Navn: Kari Nordmann\nE-post: kari@example.no\nHenvendelsen gjelder: Sletting av mine data\nMelding: slett meg", {"erasure"}, True),
 ("lawyer", "Krav om innsyn på vegne av klient", "Undertegnede representerer Per Hansen. På vegne av min klient krever vi innsyn i samtlige personopplysninger dere behandler om ham, jf. personvernforordningen art. 15.", {"access"}, True),
 ("parent", "", "Jeg er mor til Emma (14). Jeg ber om at dere sletter alle opplysningene om datteren min.", {"erasure"}, True),
 ("heir", "", "Min far døde i mars. Som arving ber jeg om at kontoen hans og alle opplysningene om ham slettes.", {"erasure"}, True),
]


@pytest.mark.parametrize("name,subject,body,intents,possible", CASES, ids=[c[0] for c in CASES])
def test_category(name: str, subject: str, body: str, intents: set[str], possible: bool | None) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()
    if possible is not None:
        assert result.possible_request is possible, result.explain()


@pytest.mark.parametrize("text", [
    "Hei, jeg har et spørsmål om personvern og mine data hos dere.",
    "Lurer på noe ang GDPR",
    "hva gjør dere med personopplysningene",
    "I have a question about my personal data.",
])
def test_a_request_cue_below_the_threshold_is_unclear_not_nothing(text: str) -> None:
    result = understand_text(text)
    assert result.possible_request and (result.intents or result.unclear), result.explain()


@pytest.mark.parametrize("subject,text", [
    ("Ordrebekreftelse 10023", "Takk for din bestilling! Ordrebekreftelse for ordre 10023. Les om personvern på nettsiden."),
    ("Automatisk svar: Spørsmål", "Jeg er fraværende til 3. august og leser ikke e-post. Ved spørsmål om personvern, kontakt sentralbordet."),
    ("Nyhetsbrev desember", "Du mottar denne e-posten fordi du har meldt deg på nyhetsbrevet. Vis i nettleser. Personvernerklæring."),
    ("", "Hei, når kommer pakken min? Ordrenummer 5531."),
])
def test_certain_non_requests_do_not_go_to_triage(subject: str, text: str) -> None:
    result = understand_text(text, subject=subject)
    assert not result.possible_request, result.explain()


def test_classify_json_reports_possible_request() -> None:
    result = CliRunner().invoke(cli, ["classify", "--json", "Lurer på noe ang GDPR"])
    data = json.loads(result.output)
    assert data["intents"] == [] and data["unclear"] is True and data["possible_request"] is True
    assert "triage" in data
    result = CliRunner().invoke(cli, ["classify", "--json", "Slett meg fra alle systemene deres."])
    data = json.loads(result.output)
    assert data["intents"] == ["erasure"] and data["possible_request"] is True


def test_classify_jsonl_lines_gain_possible_request_and_keep_their_keys() -> None:
    lines = (json.dumps({"id": "a", "body": "Hei, når kommer pakken min? Ordrenummer 5531."}) + "\n"
             + json.dumps({"id": "b", "body": "Lurer på noe ang GDPR"}) + "\n")
    result = CliRunner().invoke(cli, ["classify", "--jsonl"], input=lines)
    out = [json.loads(line) for line in result.output.splitlines()]
    assert all({"id", "intents", "language"} <= set(o) for o in out)
    assert [o["possible_request"] for o in out] == [False, True]


# Everyday phrasings across the Nordic languages and English, staff notes, forms and letters
# on someone's behalf, and business look-alikes that may go to triage but are never a request.
MORE = [
    ("Kunde ringte og ba om å bli slettet fra alle systemer.", {"erasure"}),
    ("Kunden var innom butikken, vil vite hvilke opplysninger vi har om ham.", {"access"}),
    ("Ringte fra Ola Hansen: ønsker ikke flere SMS-tilbud fra oss.", {"opt_out"}),
    ("Kunden sier adressen i kunderegisteret er feil, ny adresse er Storgata 5.", {"rectification"}),
    ("Navn: Per\nTelefon: 99999999\nHva gjelder det: Innsyn\nMelding: vil se hva dere har lagret", {"access"}),
    ("Jeg skriver som advokat for Hans Olsen og krever på hans vegne at alle personopplysninger om ham slettes.", {"erasure"}),
    ("Som verge for min sønn ber jeg om kopi av alle opplysninger dere har om ham.", {"access"}),
    ("Min mor er død, og vi ønsker at hun fjernes fra kundeklubben og at dataene hennes slettes.", {"erasure"}),
    ("Viser til min henvendelse 3. mars om innsyn som fortsatt ikke er besvart. Jeg ber igjen om kopi av opplysningene.", {"access"}),
    ("Hei. Jeg har fått brev fra dere, men jeg har aldri vært kunde. Hvor har dere adressen min fra?", {"access"}),
    ("Hvordan kan det ha seg at dere har telefonnummeret mitt?", {"access"}),
    ("hei dere har numeret mitt fra et sted, hvor fikk dere det fra", {"access"}),
    ("hei, kan dere delete my data? jeg snakker ikke so good norsk", {"erasure"}),
    ("Dzień dobry, ja nie rozumiem norsk. Prosze usunac moje dane. Dziekuje", {"erasure"}),
    ("ta meg ut av systemene deres", {"erasure"}),
    ("jeg vil ikke være registrert hos dere mer", {"erasure"}),
    ("Feil navn på meg i systemet deres, jeg heter Kari Hansen, ikke Kari Hanssen.", {"rectification"}),
    ("Hej! Var har ni fått mitt nummer ifrån?", {"access"}),
    ("Ta bort mig ur ert kundregister.", {"erasure"}),
    ("Hvor har I mit telefonnummer fra?", {"access"}),
    ("Jeg anmoder om aktindsigt i mine personoplysninger.", {"access"}),
    ("Can you take me off your system completely? I'm not a customer anymore.", {"erasure"}),
    ("Hei, vi har en ansatt som har sluttet. Kan dere slette brukeren hans i FDV-portalen?", set()),
    ("Vi vil gjerne ha slettet de gamle tegningene av bygget fra dokumentarkivet i FDV.", set()),
    ("Kan vi få slettet gamle alarmhendelser fra loggen i appen? Det er så mange.", set()),
    ("Hvordan eksporterer vi alle dataene våre fra FDV til Excel?", set()),
    ("Your personal data will be deleted in 48 hours unless you confirm your account here.", set()),
    ("Jeg sendte feil vedlegg i forrige e-post, vennligst slett det.", set()),
    ("Kjære kunde, vi har oppdaget uvanlig aktivitet. Oppdater opplysningene dine innen 24 timer for å unngå at kontoen sperres.", set()),
    ("Please delete the old project 'Building B' from our Plania account, it's been archived.", set()),
    ("Can you remove John from our alarm user list? He no longer works here.", set()),
    ("Hei, kan dere slette meg som kontaktperson for anlegget? Jeg har flyttet, ny kontaktperson er Per.", set()),
    ("Vi i borettslaget lurer på hvordan vi setter opp automatisk sletting av videoopptak etter 7 dager.", set()),
    ("cust called re gdpr - wants a copy of everything we have on him. callback 41234567", {"access"}),
    ("Notat: dame ringte, sier vi har feil fødselsdato på henne, vil ha det rettet.", {"rectification"}),
    ("Thanks. While you're at it, please also stop sending me marketing emails.", {"opt_out"}),
    ("Hello, I'd like to see the footage from your camera at the car park where my car was damaged on Monday. I'm not a customer.", {"access"}),
    ("Could I get the alarm log showing when my fob was used at the gym?", {"access"}),
    ("Hei, jeg ble påkjørt på parkeringsplassen deres. Kan jeg få se opptakene der bilen min står?", {"access"}),
    ("Kan vi få loggen som viser når alarmen ble slått av i helgen?", set()),
    ("Can you turn off the text alerts when the alarm is set and unset? Too many messages.", set()),
    ("We need to export all our maintenance data from Plania to our new system. Is there an API?", set()),
    ("Kunde ringte: vil ha dataene sine overført til ny leverandør.", {"portability"}),
    ("Kunde ønsker at vi stopper all bruk av dataene hans til analyse mens klagen behandles.", {"restriction"}),
]


@pytest.mark.parametrize("body,intents", MORE, ids=[f"more-{i}" for i in range(len(MORE))])
def test_more_everyday_phrasings_and_look_alikes(body: str, intents: set[str]) -> None:
    result = understand_text(body)
    assert set(result.intents) == intents, result.explain()

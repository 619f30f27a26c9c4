"""Issue 18, third round: the phrasing families and look-alike classes found by reading the
errors of sets H and I by category (H and I became development data on 2026-11-30). Every
example here was written for its family; none is a row of a labelled set."""

from __future__ import annotations

import pytest

from assistant.understand.pipeline import understand_text

FAMILIES = [
    # (family, subject, body, expected intents)
    # phishing: deletion of data or an account as a threat with a deadline
    ("phishing_verify_nb", "Konto", "Kjære bruker, i henhold til GDPR må du bekrefte profilen din innen 48 timer, ellers blir alle dataene dine slettet. Trykk på lenken.", set()),
    ("phishing_verify_da", "Konto", "Kære bruger, i henhold til GDPR skal din profil bekræftes. Ellers slettes dine oplysninger inden 48 timer.", set()),
    ("phishing_verify_en", "Account", "Dear user, under GDPR you must verify your identity within 48 hours. Failure to verify will result in permanent deletion of your account data.", set()),
    ("phishing_reported_nb", "Svindel?", "Jeg fikk en e-post fra 'IT-support' om å logge inn for å unngå sletting av kontoen pga GDPR. Er det fra dere?", set()),
    # third-party bulletins about data protection rights
    ("bulletin_rights_nb", "Nyhetsbrev", "NYHETSBREV: Datatilsynet minner om at registrerte kan kreve innsyn og sletting. Les våre tips om slettekrav. Meld deg av nyhetsbrevet her.", set()),
    ("bulletin_rights_sv", "Nyhetsbrev", "NYHETSBREV – IMY har publicerat vägledning om rätten att bli raderad. Så hanterar du en begäran om radering. Avregistrera dig här.", set()),
    # a customer's own admin: someone else's alarm code
    ("other_persons_code", "Kode", "Hei, barnevakten vår har hatt egen alarmkode. Kan dere slette koden hennes (bruker 3) så den slutter å virke?", set()),
    # opt-out as the second wish of a mail
    ("sv_copy_delete_no_more", "Ta bort", "Skicka mig en kopia av vad ni har om mig och radera det sen. Jag vill inte heller få fler nyhetsbrev.", {"access", "erasure", "opt_out"}),
    ("sv_source_and_call_lists", "Samtal", "Var fick ni mitt nummer ifrån? Och ta bort mig från era ringlistor.", {"access", "opt_out"}),
    ("en_stop_texts_and_what", "SMS", "Please stop the text messages and tell me what you have stored about me.", {"access", "opt_out"}),
    ("da_newsletter_list_too", "Glem mig", "Slet alt om mig, også i nyhedsbrevslisten.", {"erasure", "opt_out"}),
    ("da_no_calls_and_delete", "Note", "Ringede en kunde. Hun vil ikke ringes op mere og vil slettes fra kundekartoteket.", {"erasure", "opt_out"}),
    ("ru_unsubscribe_me", "Рассылка", "Прошу отписать меня от вашей рассылки. Спасибо.", {"opt_out"}),
    # erasure phrasings
    ("sv_delete_please", "Re: ärende", "Tack. Radera gärna den gamla ärendehistoriken om det går.", {"erasure"}),
    ("en_staff_wants_deleted", "Slack", "Call from a former contact. Wants his user in the portal and CRM record deleted. Can someone handle?", {"erasure"}),
    ("en_lawyer_copy_then_erasure", "Our client", "On behalf of our client we request a copy of all personal data you hold about her and, upon provision of that copy, the erasure of that data.", {"access", "erasure"}),
    # access phrasings
    ("sv_footage_copies", "Kamera", "Jag vill ha kopior av inspelningar där jag syns från i går eftermiddag.", {"access"}),
    ("da_register_extract", "Udtræk", "Kan I sende mig et registerudtræk over mine oplysninger?", {"access"}),
    ("pl_footage_copy", "Nagranie", "Proszę o kopię nagrań, na których jestem, z tego dnia.", {"access"}),
    ("en_get_the_video", "Video", "Can I get the video from your camera where I am in it?", {"access"}),
]


@pytest.mark.parametrize("name,subject,body,intents", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()

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


MORE_FAMILIES = [
    # objection: cameras pointed at a neighbour, surveys
    ("nb_not_be_filmed", "Kamera", "Nabo ringte, hun vil ikke at vi skal filme henne når hun går forbi. Kan noen sjekke?", {"objection"}),
    ("nb_not_filmed_letter", "Brev", "Kameraet ditt filmer inngangen min. Jeg vil ikke bli filmet.", {"objection"}),
    ("nb_no_surveys", "Undersøkelse", "Jeg vil ikke at e-posten min brukes til kundeundersøkelser etter hvert kjøp.", {"objection"}),
    # rectification: updating a profile or customer card
    ("en_update_profile", "Profile", "Please update my profile from Anna Berg to Anna Dahl, I got married.", {"rectification"}),
    ("nb_update_customer_card", "Notat", "Kunde ringte, har ny e-post. Vil at vi oppdaterer kundekortet med den nye.", {"rectification"}),
    ("uk_correct_address", "Адреса", "У вас записана моя стара адреса. Будь ласка, виправте її на нову.", {"rectification"}),
    ("nb_fix_email_no_newsletter", "Staff", "Kunden vil ikke ha nyhetsbrev til den nye adressen, men vil at vi retter e-posten i portalen.", {"opt_out", "rectification"}),
    # restriction while a complaint is handled
    ("nb_hold_until_complaint", "Klage", "Kunden sier vi ikke skal dele opplysningene hans med regnskapsfirmaet før klagen er behandlet.", {"restriction"}),
    # several wishes in one mail
    ("nb_off_list_and_what", "Telefon", "Ringte en dame, vil bli tatt bort fra lista etter to kampanjemailer, og vil vite hva vi har om henne.", {"access", "opt_out"}),
    ("nb_stop_delete_source", "Form", "Jeg ber om at markedsføringen til meg stoppes og at dere sletter opplysningene. Si også fra hvor dere fikk dem fra.", {"access", "erasure", "opt_out"}),
    ("ti_tell_then_delete", "ሓበሬታ", "ሰላም፣ ብዛዕባይ ዘለኩም ሓበሬታ ክትሰዱለይ እሓትት። ድሕሪኡ ክትድምስስዎ እደሊ።", {"access", "erasure"}),
    ("ar_tell_then_delete", "بيانات", "أريد أن أعرف ما هي المعلومات التي لديكم عني، وبعد ذلك أريد حذفها.", {"access", "erasure"}),
    ("nb_delete_all_is_no_access", "slett", "slett alt dere har om meg, takk.", {"erasure"}),
    ("en_stop_texts_keep", "SMS", "Hi, please stop the texts with offers and tell me what you keep about me.", {"access", "opt_out"}),
    ("nn_no_sales_calls", "Sal", "Hei, eg vil ikkje bli ringd opp om tilbod lenger. Takk.", {"opt_out"}),
    ("nn_delete_and_no_more", "Melde av", "hei, eg har slutta der og vil ha sletta kontoen min og ikkje få meir reklame frå dykk.", {"erasure", "opt_out"}),
    ("nb_no_more_post_and_remove", "Notat", "Kunde ringte, vil ikke ha mer post fra oss og vil at vi fjerner ham fra kunderegisteret.", {"erasure", "opt_out"}),
    ("nb_confirm_deleted", "GPS", "Kunde ringte om appen, ber om bekreftelse på at de gamle posisjonene hans slettes.", {"erasure"}),
    ("en_stop_tracking_keep_newsletter", "Tracking", "Your newsletter tracks which links I click. Please stop the tracking for my address, I'm fine getting the newsletter itself.", {"objection"}),
    # product questions are no privacy question
    ("en_product_delivery", "q", "do you deliver smoke alarms to Bodø?", set()),
    ("da_product_question", "Både", "Hej! Sælger I CO-alarmer til både? Hilsen Per", set()),
    ("en_which_cookies", "Cookies", "Which cookies does your site use, and does it work without the tracking pixel?", {"question"}),
]


@pytest.mark.parametrize("name,subject,body,intents", MORE_FAMILIES, ids=[f[0] for f in MORE_FAMILIES])
def test_more_family(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()

"""Issue 18, fourth round: the phrasing families and look-alike classes found by reading the
errors of sets J and K (development data since 2026-12-01) and of the training sets N and O by
category. Every example here was written for its family; none is a row of a labelled set."""

from __future__ import annotations

import pytest

from assistant.understand.pipeline import understand_text

FAMILIES = [
    # (family, subject, body, expected intents)
    # opt-out: off a named list (compounds such as "nyhetsbrevlista", "SMS-lista")
    ("nb_off_newsletter_list_staff", "chat", "Kunde på chatten ber om at vi fjerner henne fra nyhetsbrevlista, adressen er lise.k@epost.no.", {"opt_out"}),
    ("nb_off_sms_list_note", "Notat", "Ringte en herre som vil fjernes fra SMS-lista vår. Han handler fortsatt.", {"opt_out"}),
    ("nn_off_mail_list", "Liste", "Kan de fjerne meg frå e-postlista for kursinvitasjonar? Takk.", {"opt_out"}),
    # opt-out: a complaint that marketing still arrives
    ("nb_still_catalogue", "Katalog", "Dere sender meg fortsatt papirkatalogen i posten. Kan dere stoppe den?", {"opt_out"}),
    ("nb_still_newsletter_note", "", "Kunde ringte sint fordi hun fortsatt får nyhetsbrev etter at hun meldte seg av. Vil ha det stoppet nå.", {"opt_out"}),
    ("nb_never_contacted_again", "Krav", "Jeg krever å aldri bli kontaktet igjen av selgerne deres.", {"opt_out"}),
    # opt-out: loyalty clubs are marketing, not the register
    ("nb_not_in_club", "Klubb", "Jeg ønsker ikke å stå i rabattklubben deres mer. Send meg ingen flere tilbud.", {"opt_out"}),
    ("nn_out_of_club", "Klubb", "Eg vil ikkje vere med i kundeklubben lenger.", {"opt_out"}),
    # look-alike: operational notices are no marketing
    ("nb_operational_notices", "Drift", "Kan dere ta meg av lista over driftsmeldinger? Jeg har fått ny jobb, og Per tar over.", set()),
    # access: asked as a check, with deletion on condition
    ("nb_check_card_then_delete", "Kort", "Kan dere sjekke om dere fortsatt har lagret kortnummeret mitt? I så fall vil jeg at det slettes.", {"access", "erasure"}),
    ("en_check_store_then_remove", "Card", "Could you check if you still store my payment card? If so, please delete it.", {"access", "erasure"}),
    ("nb_register_still", "Nummer", "Har dere fortsatt adressen min i registeret? Jeg flyttet for lenge siden.", {"access"}),
    # access: logs, recordings of calls, what the system shows
    ("nb_see_alarm_log", "Logg", "Kan jeg få se alarmloggen for hytta de siste to ukene?", {"access"}),
    ("nb_call_recording_thread", "Re: Innsyn", "Takk for filen. Opptakene av samtalene mine med vaktsentralen mangler, kan dere sende dem?", {"access"}),
    ("nb_note_printout", "", "Mann ved disken vil ha utskrift av hva vi har lagret om ham. Ring ham i morgen.", {"access"}),
    ("en_want_recording", "Call", "You record calls, so I want the recording of my call on Monday.", {"access"}),
    # thanks for an answer already given is no new request
    ("nb_thanks_for_access", "Takk", "Takk for innsynet, det var oversiktlig.", set()),
    ("uk_received_copy_then_delete", "Re: запит", "Дякую, отримав копію. Тепер прошу видалити все про мене.", {"erasure"}),
    ("ar_thanks_for_deleting", "شكرا", "شكرا على حذف حسابي.", set()),
    # erasure: reminders asked as questions, "vil ha det fjerna", not in your systems
    ("nb_reminder_have_you_deleted", "Slettet?", "Har dere slettet meg nå? Jeg spurte for en måned siden.", {"erasure"}),
    ("nb_reminder_still_not_deleted", "Re: sak", "Dere har fortsatt ikke slettet kontoen min, selv om jeg ba om det i august.", {"erasure"}),
    ("nb_picture_removed", "Bilde", "Dere har lagt ut et bilde av meg på nettsiden. Jeg vil ha det fjernet.", {"erasure"}),
    ("nb_not_in_systems_lowercase", "", "jeg vil ikke ligge inne hos dere. fjern meg. var bare på en messe", {"erasure"}),
    ("sv_not_in_registers", "Radera", "Jag vill inte finnas i era system. Ta bort mina uppgifter.", {"erasure"}),
    ("nn_delete_all_stored", "Slett", "Eg vil at de slettar alt de har lagra om meg.", {"erasure"}),
    # look-alikes of erasure: retention settings, bookings, price quotes, a thanks, phishing
    ("nb_camera_retention_setting", "Opptak", "Kan dere sette opp at opptakene i lageret vårt slettes automatisk etter 10 dager?", set()),
    ("nb_booking_deleted_by_mistake", "Notat", "Kunde klaget fordi verkstedet slettet timebestillingen hans ved en feil. Ny time satt opp.", set()),
    ("nb_delete_price_quote", "Skjema", "Slett den gamle forespørselen min om pristilbud, jeg har bestemt meg.", set()),
    ("en_phishing_is_this_from_you", "Odd mail", "Got this: 'Your account will be deleted due to GDPR, click to keep it'. Is this from you?", set()),
    ("nb_phishing_is_it_real", "Rart", "Fikk en e-post om at kontoen min blir slettet hvis jeg ikke logger inn. Er denne fra dere?", set()),
    ("sv_deletion_confirmed", "Tack", "Tack! Nu har jag fått bekräftelse på att mitt konto är raderat.", set()),
    ("ru_phishing_will_be_deleted", "Аккаунт", "Ваш аккаунт будет удалён через 48 часов. Перейдите по ссылке, чтобы сохранить его.", set()),
    # restriction: keep it, but do not use it while a case runs
    ("nb_dont_delete_yet", "", "Hun vil ikke at vi sletter noe om henne ennå, men vi skal ikke bruke det til noe annet heller.", {"restriction"}),
    ("nb_let_be_until", "Klage", "Kan dere la være å slette opplysningene mine inntil klagen er behandlet?", {"restriction"}),
    ("da_neither_use_nor_delete", "Klage", "Lad være med at bruge eller slette mine oplysninger, før sagen er afgjort.", {"restriction"}),
    ("ru_do_not_delete_nor_use", "Спор", "Прошу не удалять и не использовать мои данные, пока спор не решён.", {"restriction"}),
    # rectification in staff notes and other languages
    ("nb_note_wrong_mobile", "", "Kunde ringte: vi har feil mobilnummer på ham i systemet. Nytt nummer står i saken.", {"rectification"}),
    ("da_note_address_corrected", "Notat", "Dansk kunde ringede og vil have sin adresse rettet til Søndergade 4.", {"rectification"}),
    ("es_name_misspelt", "Nombre", "Mi apellido está mal escrito en su sistema. ¿Pueden corregirlo?", {"rectification"}),
    ("lt_change_number", "Numeris", "Prašau pakeisti mano telefono numerį jūsų sistemoje.", {"rectification"}),
]


@pytest.mark.parametrize("name,subject,body,intents", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


MORE_FAMILIES = [
    # other languages: stop sending / calling, what you hold, recordings
    ("ru_stop_sending_ads", "Реклама", "Перестаньте присылать мне рекламу по почте.", {"opt_out"}),
    ("ar_stop_calling", "طلب", "من فضلكم توقفوا عن الاتصال بي.", {"opt_out"}),
    ("so_stop_adverts", "Fariin", "Fariimaha xayaysiiska ha ii soo dirina. Jooji.", {"opt_out"}),
    ("pl_what_stored_no_diacritics", "dane", "Co macie zapisane o mnie w systemie?", {"access"}),
    ("ru_call_recording", "Запись", "Хочу получить запись разговора с вашим оператором.", {"access"}),
    ("ar_copy_of_recording", "تسجيل", "أريد نسخة من التسجيل الذي يظهر سيارتي.", {"access"}),
    ("tr_show_then_delete", "Bilgiler", "Hakkımda hangi bilgileri sakladığınızı öğrenmek istiyorum, sonra hepsini silin.", {"access", "erasure"}),
    # portability: to a new company, as a file for a spreadsheet
    ("en_staff_moved_to_new_company", "Note", "Customer on the phone wants his data moved to his new alarm company.", {"portability"}),
    ("sv_note_transferred", "Notering", "Kunden vill ha sina uppgifter överförda direkt till den nya leverantören.", {"portability"}),
    ("nb_file_for_spreadsheet", "Fil", "Kan jeg få kjøpene mine som en fil jeg kan åpne i et regneark?", {"portability"}),
    # look-alikes of portability: a business exporting its own system data
    ("en_business_migration", "Export", "We are migrating from your system and need an export of our property data and work orders.", set()),
    ("sv_how_do_we_export", "Export", "Hur exporterar vi alla ritningar till ett annat system?", set()),
    # questions in staff notes and other languages
    ("nb_note_sells_on", "", "Kunde i butikken lurte på om vi selger opplysninger videre til andre firma. Ikke noe mer.", {"question"}),
    ("en_where_stored_note", "Note", "Walk-in customer asked where we store data and whether it leaves Norway.", {"question"}),
    ("uk_how_long_kept", "Питання", "Як довго ви зберігаєте записи з камер?", {"question"}),
    ("es_share_with_facebook", "Pregunta", "¿Compartís mis datos con Facebook?", {"question"}),
    # objection: tracking of opened newsletters, purchase history for recommendations, sharing
    ("nb_no_open_tracking", "Sporing", "Jeg vil fortsatt ha nyhetsbrevet, men dere skal ikke spore når jeg åpner nyhetsbrevene.", {"objection"}),
    ("nb_no_recommendations", "Anbefalinger", "Ikke bruk kjøpshistorikken min til personlige anbefalinger.", {"objection"}),
    ("nb_dont_share_number", "Deling", "Jeg vil ikke at dere deler nummeret mitt med forhandlerne deres.", {"objection"}),
    ("es_dont_film_me", "Cámara", "No estoy de acuerdo con que me graben al entrar en casa.", {"objection"}),
    ("sv_not_filmed", "Kamera", "Vi vill inte bli filmade när vi går in i huset.", {"objection"}),
    # web forms: unticked boxes are options; a field name is no request object
    ("nb_form_unticked_boxes", "Skjema", "Navn: Ola\nType: [x] Innsyn [ ] Sletting [ ] Retting\nBeskrivelse: alt dere har", {"access"}),
    ("nb_form_email_field", "Skjema", "Navn: Kari\nE-post: kari@example.no\nMelding: Hvordan bytter jeg filter i varmepumpa?", set()),
    # procurement, vendors' pitches, authorities' complaint letters
    ("nb_tender_describes_rights", "Anbud", "Tilbudet må beskrive hvordan dere håndterer innsyn og sletting av kameraopptak.", set()),
    ("en_vendor_demo", "GDPR", "Our tool automates erasure and access requests. Book a demo today!", set()),
    ("nb_authority_complaints", "Tilsyn", "Forbrukertilsynet har mottatt klager på at dere sender reklame uten samtykke.", set()),
    # staff notes: a colleague says it is no privacy matter; someone else's app access
    ("nb_note_not_privacy", "", "Butikkeier vil at vi sletter et klipp av en ansatt. Sa nei, ikke personvernsak.", set()),
    ("nb_remove_ex_partner_access", "", "Kunden vil at vi fjerner ekssamboerens tilgang til appen.", set()),
]


@pytest.mark.parametrize("name,subject,body,intents", MORE_FAMILIES,
                         ids=[f[0] for f in MORE_FAMILIES])
def test_more_families(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


def test_lower_case_sentence_boundary_keeps_abbreviations() -> None:
    """A phone-typed full stop before a lower-case word ends a sentence, so a look-alike in the
    next sentence ("webinar") does not cancel the request; "f.eks." and "ca." do not."""
    result = understand_text("vil ikke være registrert hos dere. slett meg. jeg var på et webinar")
    assert "erasure" in result.intents, result.explain()


PROBES = [
    # own probes written after the fixes, per category of the issue (not rows of any set)
    ("nb_note_forget_him", "Notat", "Kunde i butikken ba oss glemme ham helt, han flytter og vil ikke stå noe sted hos oss.", {"erasure"}),
    ("nb_thread_status_of_deletion", "Re: Din henvendelse [DSR-2026-0412]", "Hei igjen, har dere kommet noe videre med slettingen? Det er snart to måneder.", {"erasure"}),
    ("nb_no_longer_receive_anything", "", "Vil bare si fra at jeg ikke lenger ønsker å motta noe som helst fra dere.", {"opt_out"}),
    ("nb_off_all_lists_is_opt_out", "", "hei kan dere fjerne meg fra alle listene deres? takk", {"opt_out"}),
    ("nb_let_be_while_complaint", "", "Vil dere være så snill å la være å bruke dataene mine til noe annet mens klagen behandles?", {"restriction"}),
    ("nb_phishing_deadline", "Konto", "Din konto vil bli slettet om 24 timer på grunn av GDPR. Klikk her for å beholde den.", set()),
    ("nb_webinar_about_rights", "Webinar", "Bli med på vårt gratis webinar om innsynsrett og sletting! Påmelding her.", set()),
    ("nb_quote_how_deletion_handled", "Tilbud", "Vi ønsker tilbud på kamera i sykkelboden. Hvordan håndteres sletting av opptakene?", set()),
    ("nb_copy_of_warranty", "Kopi", "Kan jeg få en kopi av garantibeviset for varmepumpa?", set()),
    ("nb_note_copy_of_invoices", "Slack", "Regnskapsbyrået ringte, de vil ha kopi av alle fakturaer for i fjor.", set()),
    ("nb_door_sensor_notices", "SMS", "Slutt å sende meg varsel hver gang dørkontakten utløses, det er bare katten.", set()),
]


@pytest.mark.parametrize("name,subject,body,intents", PROBES, ids=[f[0] for f in PROBES])
def test_probes(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


MORE_PROBES = [
    ("en_stop_texting_note", "Staff note", "Caller wants us to stop texting her about offers, she only wants service reminders.", {"opt_out"}),
    ("en_why_sons_number_remove", "", "Why do you have my son's phone number? He is 12. Please remove it.", {"access", "erasure"}),
    ("en_disclaimer_remove_it", "", "This e-mail may contain confidential information. If you received it in error, please remove it.", set()),
]


@pytest.mark.parametrize("name,subject,body,intents", MORE_PROBES, ids=[f[0] for f in MORE_PROBES])
def test_more_probes(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()

"""Issue 18, fifth round: the phrasing families and look-alike classes found by reading the
errors of sets L and M (development data since 2026-12-01) by category. Every example here was
written for its family; none is a row of a labelled set. FAMILIES were written before the fixes
(14 of 25 missed with the lexicons and model at the start of the round; three still miss and are
left out: a business asking how to erase a clip its customer asked about (read as erasure),
"switch that learning off" (objection not found), "that no longer holds. Take it away" in a
reply (triage)). MORE_FAMILIES were written after the fixes as a check (1 of 15 missed, then
fixed: Russian words for e-mail and database as personal data)."""

from __future__ import annotations

import pytest

from assistant.understand.pipeline import understand_text

FAMILIES = [
    # (family, subject, body, expected intents)
    # erasure look-alikes
    ("nb_phishing_conditional","Viktig","I henhold til nye regler må alle brukere bekrefte kontoen sin. Gjøres ikke dette innen 24 timer, vil kontoen bli slettet.",set()),
    ("en_phishing_conditional","Urgent","Under GDPR all accounts must be verified. If not verified within 48 hours your account will be permanently deleted. Click here.",set()),
    ("nn_course_signoff","Kurs","Eg kan ikkje kome på kurset på måndag. Stryk meg frå deltakarlista.",set()),
    ("nb_course_signoff","Kurs","Jeg rekker ikke kurset i morgen, slett meg fra påmeldingslista.",set()),
    ("nb_ask_if_delete_warranty","Garanti","Hvis jeg sletter brukeren min i appen, gjelder garantien fortsatt? Ikke slett noe nå, jeg bare lurer.",set()),
    ("sv_business_how_delete_clip","Kamera","Vi har era kameror i butiken. En kund vill att vi tar bort en film där han syns. Hur raderar vi den i appen?",set()),
    # erasure look-alike: an unnamed "the list" after a course or event is no register
    ("nb_event_signoff_list", "Julebord", "Jeg kommer ikke på julebordet likevel. Slett meg fra lista.", set()),
    ("nn_course_list_ill", "Kurs", "Eg er sjuk og kan ikkje kome på kurset. Slett meg frå lista.", set()),
    # erasure: "I do not want you to have my ..." (nn; in nb the learned model adds objection to
    # "jeg vil ikke at dere skal ha ...", left as it is) and ru "(I want) you to delete them"
    ("nn_not_want_you_to_have", "Bilete", "Eg vil ikkje at de skal ha bileta mine på nettsida.", {"erasure"}),
    ("ru_want_you_to_delete", "Фото", "Хочу, чтобы вы удалили все мои фотографии.", {"erasure"}),
    # other languages
    ("ru_delete_number","Номер","Пожалуйста, удалите мой номер из вашей базы данных.",{"erasure"}),
    ("uk_send_recording","Запис","Прошу надіслати мені відеозапис, на якому видно мене біля входу.",{"access"}),
    ("es_stop_offers","Ofertas","Por favor, dejen de enviarme ofertas por SMS.",{"opt_out"}),
    ("es_delete_my_user","Usuario","Por favor, borren mi cuenta y mis datos.",{"erasure"}),
    ("es_correct_address","Dirección","Mi dirección en su sistema está mal. Por favor, corríjanla.",{"rectification"}),
    ("so_fix_name","Magac","Magacayga si khalad ah ayaa loo qoray. Fadlan sax.",{"rectification"}),
    ("lt_send_log","Žurnalas","Prašau atsiųsti man signalizacijos žurnalą.",{"access"}),
    ("ro_delete_phone","Telefon","Vă rog să ștergeți numărul meu de telefon din baza de date.",{"erasure"}),
    # indirect
    ("nb_left_job_take_me_out","Sluttet","Jeg jobber ikke der lenger, men står fortsatt i systemet deres med bilde og telefon. Kan dere ta meg ut?",{"erasure"}),
    ("nb_make_sure_not_there","Bruker","Jeg har ikke vært kunde på flere år. Kan dere sørge for at jeg ikke ligger inne hos dere lenger?",{"erasure"}),
    ("nb_where_name_from","","hvor har dere fått navnet og adressen min fra? har aldri vært kunde",{"access"}),
    ("nb_fix_name_spelling","Navn","Dere staver navnet mitt feil i alle e-postene. Det er Kristoffer med k. Kan dere fikse det?",{"rectification"}),
    ("nb_withdraw_marketing_consent","Samtykke","Jeg trekker tilbake samtykket til å motta tilbud på e-post.",{"opt_out"}),
    ("en_form_stop_analytics","","Name: Jo Message: Do not use my data for analytics or product development, only for the service.",{"objection"}),
    ("ru_what_footage_then_delete","Видео","Хочу узнать, какие записи со мной у вас есть, а потом удалите их.",{"access","erasure"}),
    ("uk_who_shared","Дані","Кому ви передали мій номер телефону?",{"access"}),
]


@pytest.mark.parametrize("name,subject,body,intents", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_families(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


MORE_FAMILIES = [
    ("nb_phishing_verify_or_deleted","Sikkerhet","Alle kunder må verifisere profilen sin. Hvis dette ikke gjøres innen fredag, slettes profilen automatisk.",set()),
    ("en_fake_dsar_portal","DSAR #4411","A request has been filed against your organization by a data subject. You must respond within 48 hours using the portal.",set()),
    ("da_if_i_delete_app","App","Hvis jeg sletter appen, forsvinder mine indstillinger så? Jeg vil bare vide det.",set()),
    ("nb_how_delete_as_business","Kamera","Vi er et treningssenter med kameraene deres. Hvordan kan vi slette et opptak fra i går?",set()),
    ("sv_if_i_delete_account","Konto","Om jag raderar mitt konto, kan jag fortfarande se mina kvitton?",set()),
    ("nn_make_sure_not_registered","Brukar","Eg har ikkje jobba der på lenge. Kan de sjå til at eg ikkje ligg inne hjå dykk meir?",{"erasure"}),
    ("en_stop_using_for_analytics","Privacy","Stop using my data for analytics, please. Keep it for billing only.",{"objection"}),
    ("nb_not_for_product_development","Data","Jeg vil ikke at dataene mine brukes til produktutvikling.",{"objection"}),
    ("ro_delete_my_number","Număr","Vă rog ștergeți numărul de telefon din lista voastră.",{"erasure"}),
    ("ru_please_delete_email","Почта","Пожалуйста, удалите мою электронную почту из базы.",{"erasure"}),
    ("uk_whom_passed_address","Адреса","Кому ви передавали мою адресу?",{"access"}),
    ("es_correct_my_name","Nombre","Mi apellido está mal escrito en la app. ¿Pueden corregirlo?",{"rectification"}),
    ("so_correct_address","Cinwaan","Cinwaankaygu waa khalad. Fadlan sax.",{"rectification"}),
    ("lt_send_alarm_log","Žurnalas","Ar galite atsiųsti man signalizacijos žurnalą už praeitą savaitę?",{"access"}),
    ("lt_webinar_recording","Seminaras","Negalėsiu dalyvauti seminare. Prašau atsiųsti įrašą vėliau.",set()),
]


@pytest.mark.parametrize("name,subject,body,intents", MORE_FAMILIES, ids=[f[0] for f in MORE_FAMILIES])
def test_more_families(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


# Look-alikes of L's and M's false positives (written before their fixes; 2 of 10 missed, both
# added by the learned model: a thanks for an answer now keeps the model from adding a question
# ([any] guards question too), a technician's arrival SMS is a firm look-alike of opt-out).
LOOKALIKES = [
    ("nb_howto_retention_setting","Kamera","Vi driver en frisørsalong med kameraene deres. Hvordan setter vi opp at opptak slettes etter fem dager?",set()),
    ("en_howto_configure_retention","Retention","We run a gym with your cameras. How do we configure the recordings to be removed after a week?",set()),
    ("da_thanks_for_answer","Tak","Tak for svaret om hvor længe I gemmer mine oplysninger. Det er helt fint.",set()),
    ("nb_thanks_for_answer","Takk","Takk for svaret om hvor lenge dere lagrer opptakene. Da vet jeg det.",set()),
    ("nb_technician_eta_sms","SMS","Kan dere slutte å sende SMS hver gang montøren nærmer seg? Jeg er hjemme uansett.",set()),
    ("en_cancel_booking_list","Workshop","I can't attend the workshop on Friday. Please cancel my booking and take me off the list.",set()),
    ("nb_price_specification","Faktura","Jeg vil gjerne ha en spesifisering av hva som er inkludert i den nye prisen.",set()),
    ("nb_inspection_report_board","Rapport","Styret ber om innsyn i tilsynsrapporten fra kontrollen i september.",set()),
    ("nb_someone_elses_account","Feil mottaker","Jeg får varsler som gjelder en annen kunde. Kan dere rette e-posten på hans konto?",set()),
    ("nb_one_off_delivery","Levering","Kunden ba om at pakken sendes til hytta i stedet, kun denne ordren.",set()),
]


@pytest.mark.parametrize("name,subject,body,intents", LOOKALIKES, ids=[f[0] for f in LOOKALIKES])
def test_lookalikes(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


# Families of L's and M's missed requests fixed last (phone-typed "dont", an old detail to
# change, sv sharing for research and "what data is it", a hypothetical someone, staff notes
# asking where we got a number, pl "do not delete, but", so footage, es clitic "bórrenla");
# written after the fixes, so a check of their reach rather than a measurement.
LAST_FAMILIES = [
    ("en_dont_without_apostrophe","News","hi, i dont want your newsletter anymore, thanks",{"opt_out"}),
    ("en_old_number_change","App","The app still shows my old phone number. Can you change it to 912 34 567?",{"rectification"}),
    ("sv_not_shared_for_research","Forskning","Jag vill inte att mina uppgifter delas med universitetet.",{"objection"}),
    ("sv_what_data_is_it","Data","Ni skriver att ni använder min data. Vad är det för data?",{"access"}),
    ("en_hypothetical_someone","Question","If someone wants their account removed, who handles it, you or their employer?",set()),
    ("nb_note_where_we_got_number","","Kunde i butikken spurte hvor vi hadde mobilnummeret hans fra. Svar på e-post.",{"access"}),
    ("pl_do_not_delete_until","Spór","Proszę nie usuwać moich danych, ale też ich nie używać do czasu zakończenia sprawy.",{"restriction"}),
    ("so_can_i_get_footage","Muuqaal","Ma heli karaa muuqaalka kamaradda ee aan ku jiro?",{"access"}),
    ("es_delete_clitic","Cuenta","Tengo una cuenta antigua con mis datos. Por favor, bórrenla.",{"erasure"}),
    # access beside another request: "what is it you have on me", sv "know what you stored",
    # "how his number ended up in the club"; "the address you have on me" stays no access
    ("nb_what_is_it_you_have_on_me","Brev","Jeg fikk et rart brev fra dere. Hva er det dere faktisk har på meg?",{"access"}),
    ("sv_know_what_stored_before_delete","Radera","Radera mitt konto. Innan dess vill jag veta vad ni har sparat.",{"access","erasure"}),
    ("nb_how_number_ended_up","Klubb","Sønnen min får tilbud fra klubben deres. Jeg ber om at dere forklarer hvordan nummeret hans havnet i klubben.",{"access"}),
    ("nb_object_noun_not_access","Adresse","Adressen dere har på meg er gammel, ny er Storgata 1. Oppdater den.",{"rectification"}),
    # requests at the end of a long mail: "send us what you have of", "nothing left about us",
    # a staff note's "removed from the profile", es "elimínenla"
    ("nb_send_what_you_have_of","Oppsigelse","Vi flytter og sier opp avtalen. Før dere avslutter: send oss det dere har av logger fra alarmen i fjor.",{"access"}),
    ("nb_nothing_left_about_us","Avslutning","Når avtalen er over vil jeg at dere ikke har noe igjen om oss.",{"erasure"}),
    ("nb_note_removed_from_profile","","Kunde vil ha den gamle bilen fjernet fra profilen, han solgte den i fjor.",{"erasure"}),
    ("es_delete_it_clitic","Cuenta","Todavía tengo una cuenta en su tienda con mi dirección. Elimínenla, por favor.",{"erasure"}),
    # portability: ro "in a file", the history sent on to the new firm; a business's own export stays none
    ("ro_data_in_a_file","Date","Vă rog să îmi trimiteți datele mele personale într-un fișier.",{"portability"}),
    ("nb_history_to_new_firm","Service","Vi har byttet leverandør. Send historikken for anlegget vårt til det nye firmaet, takk.",{"portability"}),
    ("en_business_export_excel_stays_none","Export","Our property company is changing systems. Can we get an export of our maintenance plans in Excel?",set()),
]


@pytest.mark.parametrize("name,subject,body,intents", LAST_FAMILIES, ids=[f[0] for f in LAST_FAMILIES])
def test_last_families(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


# "Slutt med det" points back: an opt-out only when the message names marketing elsewhere.
STOP_THAT = [
    ("nb_stop_that_after_brochures", "Brosjyrer", "Dere sender meg kataloger i posten hver måned. Slutt med det.", {"opt_out"}),
    ("nb_stop_that_after_sms_offers", "SMS", "Jeg får SMS med tilbud fra dere hver fredag. Kan dere slutte med det?", {"opt_out"}),
]


@pytest.mark.parametrize("name,subject,body,intents", STOP_THAT, ids=[f[0] for f in STOP_THAT])
def test_stop_that_after_marketing(name: str, subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


def test_stop_that_after_tracking_is_no_opt_out() -> None:
    # The objection itself is not found yet (the message goes to a person); opt-out must not be.
    body = "Dere følger med på hvilke sider jeg besøker i nettbutikken. Det vil jeg ikke. Slutt med det."
    assert "opt_out" not in understand_text(body, subject="Sporing").intents


# sv "do not want my data used for ...", nb "what is stored when one uses ..." (a question)
@pytest.mark.parametrize("subject,body,intents", [
    ("Analys", "Jag vill inte att mina uppgifter används för marknadsanalys.", {"objection"}),
    ("Kalkulator", "Hva lagres når jeg bruker kalkulatoren på nettsiden deres?", {"question"}),
])
def test_used_for_and_what_is_stored(subject: str, body: str, intents: set[str]) -> None:
    result = understand_text(body, subject=subject)
    assert set(result.intents) == intents, result.explain()


# How to delete an account in an app oneself is no request; asking us to delete it is.
@pytest.mark.parametrize("body,intents", [
    ("How do I delete my account in the old doorbell app? We use your new system now.", set()),
    ("Please delete my account in the app and everything about me.", {"erasure"}),
])
def test_how_to_delete_in_an_app(body: str, intents: set[str]) -> None:
    result = understand_text(body, subject="App")
    assert set(result.intents) == intents, result.explain()

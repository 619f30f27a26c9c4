"""Raw mail to clean text: quotes, signatures, HTML, charsets, broken input, auto-replies."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.no import fodselsnummer

from assistant.mail.parse import (
    ParsedMail,
    html_to_text,
    parse_mail,
    receipt_time_from_headers,
)
from assistant.understand.pii import FNR_MASK
from assistant.understand.reply_parser import strip_quotes_and_signature

DATA = Path(__file__).parent / "data" / "mail"
REALWORLD = Path(__file__).resolve().parents[1].parent / "shared" / "realworld" / "mime"


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def make_fnr(birth: str) -> str:
    """A synthetic, checksum-valid number from stdnum's own check-digit functions."""
    for individual in range(100, 500):
        first9 = f"{birth}{individual:03d}"
        k1 = fodselsnummer.calc_check_digit1(first9)
        k2 = fodselsnummer.calc_check_digit2(first9 + k1) if len(k1) == 1 else "10"
        if len(k1) == 1 and len(k2) == 1 and fodselsnummer.is_valid(first9 + k1 + k2):
            return first9 + k1 + k2
    raise AssertionError("no valid number")


FNR = make_fnr("240688")


def build(body: str = "Jeg ber om innsyn.", subtype: str = "plain", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Ola Nordmann <ola@example.no>")
    msg["To"] = headers.pop("To", "kundesenter@branninfo.no")
    msg["Subject"] = headers.pop("Subject", "Innsyn")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body, subtype=subtype)
    return msg.as_bytes()


# --------------------------------------------------------------------------- quote formats

NEW = "Jeg ønsker at dere sletter alle opplysninger om meg."
OLD = "Vi har mottatt henvendelsen din om innsyn"

QUOTE_FORMATS = {
    "gmail-nb": f"Den tir. 3. nov. 2026 kl. 10:12 skrev Ola Nordmann <ola@x.no>:\n\n> {OLD}.\n",
    "gmail-nb-wrapped": (
        "Den tir. 3. nov. 2026 kl. 10:12 skrev Kundesenter Branninfo AS <\n"
        f"kundesenter@branninfo.no>:\n\n> {OLD}.\n"
    ),
    "gmail-en": f"On Tue, Nov 3, 2026 at 10:12 AM Ola Nordmann <ola@x.no> wrote:\n\n> {OLD}.\n",
    "gmail-en-wrapped": (
        "On Tue, Nov 3, 2026 at 10:12 AM Kundesenter Branninfo AS <\n"
        f"kundesenter@branninfo.no> wrote:\n\n> {OLD}.\n"
    ),
    "apple-nb": f"3. nov. 2026 kl. 10:12 skrev Ola Nordmann <ola@x.no>:\n\n> {OLD}.\n",
    "apple-en": f"On Nov 3, 2026, at 10:12, Ola Nordmann <ola@x.no> wrote:\n\n> {OLD}.\n",
    "thunderbird-nb": f"Den 03.11.2026 10:12, skrev Kundesenter:\n> {OLD}.\n",
    "thunderbird-en": f"On 11/3/26 10:12 AM, Kundesenter wrote:\n> {OLD}.\n",
    "nynorsk": f"Den 3. nov. 2026 kl. 10:12 skreiv Kari <kari@x.no>:\n> {OLD}.\n",
    "outlook-nb": (
        "________________________________\nFra: Kundesenter <kundesenter@branninfo.no>\n"
        "Sendt: tirsdag 3. november 2026 10:12\nTil: Ola Nordmann <ola@x.no>\n"
        f"Emne: Innsyn\n\n{OLD}.\n"
    ),
    "outlook-en": (
        "From: Kundesenter <kundesenter@branninfo.no>\nSent: Tuesday, November 3, 2026 10:12 AM\n"
        f"To: Ola Nordmann <ola@x.no>\nSubject: Access\n\n{OLD}.\n"
    ),
    "outlook-en-bold": (
        "*From:* Kundesenter <kundesenter@branninfo.no>\n*Sent:* Tuesday, November 3, 2026 10:12"
        f"\n*To:* Ola\n*Subject:* Access\n\n{OLD}.\n"
    ),
    "outlook-sv": (
        "Från: Kundtjänst <k@x.se>\nSkickat: den 3 november 2026 10:12\nTill: Ola\n"
        f"Ämne: Fråga\n\n{OLD}.\n"
    ),
    "outlook-da": (
        "Fra: Kundeservice <k@x.dk>\nSendt: 3. november 2026 10:12\nTil: Ola\n"
        f"Emne: Spørgsmål\n\n{OLD}.\n"
    ),
    "outlook-mac-nb": (
        "Fra: Kundesenter <kundesenter@branninfo.no>\nDato: tirsdag 3. november 2026 kl. 10:12\n"
        f"Til: Ola\nEmne: Innsyn\n\n{OLD}.\n"
    ),
    "original-message": (
        "-----Original Message-----\nFrom: Kundesenter\nSent: 3 November 2026 10:12\n"
        f"To: Ola\n\n{OLD}.\n"
    ),
    "opprinnelig-melding": (
        "-----Opprinnelig melding-----\nFra: Kundesenter\nSendt: 3. november 2026 10:12\n"
        f"Til: Ola\n\n{OLD}.\n"
    ),
    "gmail-forward": (
        "---------- Forwarded message ---------\nFrom: Kundesenter <k@branninfo.no>\n"
        f"Date: Tue, Nov 3, 2026 at 10:12 AM\nSubject: Innsyn\n\n{OLD}.\n"
    ),
    "videresendt": (
        "-------- Videresendt melding --------\nEmne: Innsyn\nDato: 03.11.2026 10:12\n"
        f"Fra: Kundesenter\n\n{OLD}.\n"
    ),
    "apple-forward-nb": f"Start på videresendt melding:\n\nFra: Kundesenter <k@x.no>\n\n{OLD}.\n",
    "angle-quotes": f"> {OLD}.\n> > Enda eldre tekst.\n",
}


@pytest.mark.parametrize("name", sorted(QUOTE_FORMATS))
def test_quote_formats_are_stripped(name: str) -> None:
    text = f"Hei,\n\n{NEW}\n\n{QUOTE_FORMATS[name]}"
    new = strip_quotes_and_signature(text)
    assert NEW in new
    assert OLD not in new
    assert "10:12" not in new


@pytest.mark.parametrize("name", sorted(QUOTE_FORMATS))
def test_quote_formats_with_crlf_line_ends(name: str) -> None:
    text = f"{NEW}\r\n\r\n{QUOTE_FORMATS[name]}".replace("\n", "\r\n")
    new = strip_quotes_and_signature(text)
    assert new == NEW


SIGNATURES = [
    "-- \nOla Nordmann\nStorgata 1",
    "Mvh\nOla Nordmann",
    "Mvh Ola Nordmann",
    "Mvh. Ola",
    "Med vennlig hilsen\nOla Nordmann\nTlf 400 00 000",
    "Vennlig hilsen,\nOla",
    "Hilsen Ola",
    "Best regards,\nJohn Smith",
    "Kind regards\nJohn",
    "Med venlig hilsen\nJens Jensen",
    "Med vänliga hälsningar\nAnna Svensson",
    "Sendt fra min iPhone",
    "Sent from my iPhone",
    "Skickat från min iPhone",
    "Sendt fra Outlook for Android",
]


@pytest.mark.parametrize("signature", SIGNATURES)
def test_signatures_are_stripped(signature: str) -> None:
    new = strip_quotes_and_signature(f"Hei,\n\n{NEW}\n\n{signature}\n")
    assert new == f"Hei,\n\n{NEW}"


def test_signature_and_quote_together() -> None:
    text = (
        f"{NEW}\n\nMvh Ola Nordmann\n\nSendt fra min iPhone\n\n"
        f"Den tir. 3. nov. 2026 kl. 10:12 skrev Kundesenter <k@branninfo.no>:\n> {OLD}\n"
    )
    assert strip_quotes_and_signature(text) == NEW


def test_only_a_quote_falls_back_to_the_whole_text() -> None:
    text = f"> {OLD}.\n> Mvh Kundesenter\n"
    assert OLD in strip_quotes_and_signature(text)


def test_pure_forward_falls_back_to_the_whole_text() -> None:
    text = QUOTE_FORMATS["gmail-forward"] + "\nJeg vil ha innsyn.\n"
    new = strip_quotes_and_signature(text)
    assert "Jeg vil ha innsyn." in new and OLD in new


def test_blank_input() -> None:
    assert strip_quotes_and_signature("") == ""
    assert strip_quotes_and_signature(" \n\t\n") == ""


@pytest.mark.parametrize(
    "text",
    [
        # A letter that opens with its own address block is the request, not a quote.
        "Til: Branninfo AS\nFra: Ola Nordmann\nEmne: Innsyn\nDato: 3. november 2026\n\n"
        "Jeg ber om innsyn etter artikkel 15.",
        # Hyphen lists are request text, not a "-Name" signature.
        "Jeg ber om:\n- kopi av alle data\n- formålet med behandlingen\n- lagringstid",
        # A sentence that starts like a sign-off word must not end the mail.
        "Takk for raskt svar på forrige henvendelse, men jeg ber nå også om sletting.",
        "Hilsen fra meg, jeg vil også ha sletting av opptakene fra kundeservice.",
        # A date without a clock time is not a quote header.
        "Den 3. mars skrev jeg til dere:\n\nJeg ønsker innsyn i mine data.",
        "Sendt fra kontoret i går, men jeg ønsker fortsatt innsyn i mine data.",
    ],
)
def test_request_text_is_never_dropped(text: str) -> None:
    new = strip_quotes_and_signature(text)
    last_line = text.strip().split("\n")[-1]
    assert last_line in new


def test_inline_answer_keeps_answers_and_drops_quoted_questions() -> None:
    text = "> Ønsker du innsyn eller sletting?\nSletting.\n> Gjelder det også opptak?\nJa."
    assert strip_quotes_and_signature(text) == "Sletting.\nJa."


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_stripping_never_returns_empty_for_text_with_content(text: str) -> None:
    new = strip_quotes_and_signature(text)
    assert isinstance(new, str)
    if text.strip():
        assert new.strip()


# --------------------------------------------------------------------------- fixtures

CLIENT_FIXTURES = {
    "gmail_nb_reply.eml": (
        "Jeg ønsker i tillegg at dere sletter kontoen min når innsynet er levert.",
        ["svarer innen 30 dager", "skrev Kundesenter", "Mvh", "Ola Nordmann"],
    ),
    "outlook_nb_reply.eml": (
        "Jeg ber om at all markedsføring til meg stanses umiddelbart.",
        ["registrert", "Fra:", "Vennlig hilsen", "Tlf", "____"],
    ),
    "apple_nb_reply.eml": (
        "Jeg vil gjerne få dataene mine i et maskinlesbart format, for eksempel JSON.",
        ["Sendt fra min iPhone", "Hei! Vi har mottatt"],
    ),
    "thunderbird_nb_reply.eml": (
        "Jeg protesterer mot at dere bruker opplysningene mine til profilering.",
        ["hva gjelder", "Storgata", "skrev"],
    ),
    "outlook_en_reply.eml": (
        "Please correct my postal address; the one you have on file is wrong.",
        ["Kind regards", "Original Message", "Dear John"],
    ),
}


@pytest.mark.parametrize("name", sorted(CLIENT_FIXTURES))
def test_client_replies_give_new_text_only(name: str) -> None:
    expected, absent = CLIENT_FIXTURES[name]
    mail = parse_mail(fixture(name))
    assert expected in mail.text
    for fragment in absent:
        assert fragment not in mail.text
        assert fragment in mail.full_text or fragment in mail.from_name
    assert expected in mail.full_text
    assert mail.auto is None


def test_headers_of_a_gmail_reply() -> None:
    mail = parse_mail(fixture("gmail_nb_reply.eml"))
    assert mail.subject == "SV: Innsyn i personopplysninger [DSR-2026-0042]"
    assert mail.from_addr == "ola.nordmann@example.no"
    assert mail.from_name == "Ola Nordmann"
    assert mail.to == ["kundesenter@branninfo.no"]
    assert mail.message_id == "<CAFx9y2n0rQ@mail.gmail.com>"
    assert mail.in_reply_to == "<dsr-ack-0042@branninfo.no>"
    assert mail.references == ["<first-0042@example.no>", "<dsr-ack-0042@branninfo.no>"]
    assert mail.return_path == "ola.nordmann@example.no"
    assert mail.date == datetime(2026, 11, 4, 8, 15, 12, tzinfo=timezone(timedelta(hours=1)))
    assert mail.date.tzinfo is not None
    assert mail.html_only is False
    assert mail.problems == []


def test_cc_and_reply_to() -> None:
    mail = parse_mail(fixture("outlook_nb_reply.eml"))
    assert mail.cc == ["per@example.no"]
    raw = build(Reply_To="Svar <Svar@Example.no>, other@example.no")
    assert parse_mail(raw).reply_to == ["svar@example.no", "other@example.no"]


def test_plain_text_is_preferred_over_html() -> None:
    mail = parse_mail(fixture("gmail_nb_reply.eml"))
    assert "<div" not in mail.full_text and "gmail_quote" not in mail.full_text
    assert "> Hei Ola," in mail.full_text  # the plain part's quoting, not the HTML's


# --------------------------------------------------------------------------- HTML


def test_html_only_mail_with_script() -> None:
    mail = parse_mail(fixture("html_only_script.eml"))
    assert mail.html_only is True
    for text in (mail.text, mail.full_text):
        assert "SCRIPT-SECRET-TEXT" not in text
        assert "document.write" not in text
        assert "color: red" not in text
        assert "Innsyn title" not in text
        assert "NOSCRIPT-TEXT" not in text
        assert "<" not in text.replace("<kundesenter@branninfo.no>", "")
    assert "Jeg ber om innsyn i alle opplysninger dere har om meg." in mail.text
    # Block elements become separate lines.
    assert "kundeopplysninger\nopptak av samtaler" in mail.text
    # The Outlook reply header and what follows is the earlier mail.
    assert "OUTLOOK-QUOTED-TEXT" not in mail.text
    assert "OUTLOOK-QUOTED-TEXT" in mail.full_text
    assert "Lise Dahl" not in mail.text  # signature after "Med vennlig hilsen"


@pytest.mark.parametrize(
    "quote_html",
    [
        '<div class="gmail_quote"><div class="gmail_attr">On Tue, Nov 3, 2026 at 10:12 AM X '
        "&lt;x@y.no&gt; wrote:</div><blockquote class=\"gmail_quote\">OLD-TEXT</blockquote></div>",
        '<div class="moz-cite-prefix">Den 03.11.2026 10:12, skrev X:</div>'
        '<blockquote type="cite">OLD-TEXT</blockquote>',
        "<blockquote>OLD-TEXT</blockquote>",
        '<div id="divRplyFwdMsg"><b>From:</b> X<br><b>Sent:</b> 3 Nov 2026 10:12</div>'
        "<div>OLD-TEXT</div>",
        '<div id="appendonsend"></div><hr><div><b>Fra:</b> X</div><div>OLD-TEXT</div>',
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
        "<p><b>From:</b> X</p></div><p>OLD-TEXT</p>",
    ],
)
def test_html_quote_containers_are_cut(quote_html: str) -> None:
    html = f"<html><body><div>{NEW}</div>{quote_html}</body></html>"
    assert "OLD-TEXT" in html_to_text(html)
    assert "OLD-TEXT" not in html_to_text(html, cut_quotes=True)
    assert NEW in html_to_text(html, cut_quotes=True)
    mail = parse_mail(build(html, subtype="html"))
    assert mail.text == NEW
    assert "OLD-TEXT" in mail.full_text


def test_bottom_posted_html_answer_below_quote_is_kept() -> None:
    html = '<blockquote type="cite">OLD-TEXT</blockquote><p>Svar under sitatet: slett meg.</p>'
    assert html_to_text(html, cut_quotes=True) == "Svar under sitatet: slett meg."


def test_html_entities_and_whitespace() -> None:
    html = "<p>Bl&aring;b&aelig;r&nbsp;og\n   &oslash;l &amp; mer</p><p>Neste</p>"
    assert html_to_text(html) == "Blåbær og øl & mer\n\nNeste"


@pytest.mark.skipif(not (REALWORLD / "talon-html-replies").is_dir(), reason="no shared talon set")
@pytest.mark.parametrize(
    "name",
    ["gmail.html", "hotmail.html", "ms_outlook_2003.html", "ms_outlook_2007.html",
     "ms_outlook_2010.html", "thunderbird.html", "windows_mail.html", "yandex_ru.html",
     "mail_ru.html"],
)
def test_real_html_replies_lose_their_quote(name: str) -> None:
    path = REALWORLD / "talon-html-replies" / name
    if not path.exists():
        pytest.skip(f"{name} not in the shared set")
    html = path.read_text(encoding="utf-8", errors="replace")
    assert "How are you" in html_to_text(html)
    mail = parse_mail(build(html, subtype="html"))
    assert "I am fine" in mail.text
    assert "How are you" not in mail.text


def test_deeply_nested_html_keeps_its_text() -> None:
    html = "<div>" * 5000 + "Slett meg." + "</div>" * 5000
    assert html_to_text(html) == "Slett meg."
    mail = parse_mail(build("<blockquote>" * 3000 + "SITAT", subtype="html"))
    assert mail.full_text == "SITAT"
    assert mail.text == "SITAT"  # all of it is quote, so the whole text is kept


# --------------------------------------------------------------------------- charsets


def test_declared_us_ascii_with_latin1_bytes() -> None:
    raw = fixture("wrong_charset_usascii_latin1.eml")
    assert "æøå".encode("latin-1") in raw
    mail = parse_mail(raw)
    assert "æøå ÆØÅ, blåbærsyltetøy" in mail.text
    assert "charset-mismatch" in mail.problems


def test_unknown_charset_keeps_the_text() -> None:
    mail = parse_mail(fixture("unknown_charset.eml"))
    assert "æøå ÆØÅ, blåbærsyltetøy" in mail.text
    assert "unknown-charset" in mail.problems


def test_utf8_bytes_labelled_latin1_are_not_mangled() -> None:
    mail = parse_mail(fixture("latin1_declared_utf8_bytes.eml"))
    assert "æøå ÆØÅ, blåbærsyltetøy" in mail.text
    assert "Ã" not in mail.text


def test_cp1252_bytes_labelled_utf8() -> None:
    raw = (
        b"From: a@example.no\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Slett meg \u2013 takk, blåbær".encode("cp1252")
    )
    mail = parse_mail(raw)
    assert mail.text == "Slett meg \u2013 takk, blåbær"


def test_encoded_word_with_unknown_charset_in_subject() -> None:
    raw = b"From: a@example.no\r\nSubject: =?x-unknown?q?Innsyn_n=E5?=\r\n\r\nHei\r\n"
    mail = parse_mail(raw)
    assert mail.subject.startswith("Innsyn n")


def test_raw_utf8_headers_rfc6532() -> None:
    raw = "From: Pål Ås <pål@example.no>\r\nSubject: Innsyn blåbær\r\n\r\nHei\r\n".encode()
    mail = parse_mail(raw)
    assert (mail.subject, mail.from_name, mail.from_addr) == ("Innsyn blåbær", "Pål Ås", "pål@example.no")


def test_raw_latin1_headers_are_decoded_not_replaced() -> None:
    raw = b"From: P\xe5l <pal@example.no>\r\nSubject: Innsyn bl\xe5b\xe6r\r\n\r\nHei\r\n"
    mail = parse_mail(raw)
    assert mail.subject == "Innsyn blåbær"
    assert mail.from_name == "Pål"
    for value in (mail.subject, mail.from_name):
        value.encode("utf-8")  # no lone surrogates left to break a database or JSON


# --------------------------------------------------------------------------- broken input


def test_empty_message() -> None:
    mail = parse_mail(b"")
    assert isinstance(mail, ParsedMail)
    assert mail.text == "" and mail.full_text == "" and mail.from_addr == ""
    assert mail.problems == ["empty-message"]


def test_message_with_no_body() -> None:
    mail = parse_mail(fixture("no_body.eml"))
    assert mail.subject == "Innsyn"
    assert mail.from_addr == "ola@example.no"
    assert mail.text == "" and mail.full_text == ""
    assert "no-body" in mail.problems


def test_missing_headers() -> None:
    mail = parse_mail(b"\r\nJeg ber om innsyn.\r\n")
    assert mail.text == "Jeg ber om innsyn."
    assert mail.from_addr == "" and mail.subject == "" and mail.date is None
    assert mail.message_id == "" and mail.to == [] and mail.return_path is None
    assert "missing-from" in mail.problems


def test_headers_that_crash_the_stdlib_parser_give_empty_values() -> None:
    # Each of these raises inside email.policy.default's header parser (CPython 3.11).
    raw = (
        b'From: "a" <a@[>\r\nTo: a@b.no, "\r\nMessage-ID: <[\r\nSubject: Innsyn\r\n'
        b"Date: not a date\r\n\r\nJeg ber om innsyn.\r\n"
    )
    mail = parse_mail(raw)
    assert mail.text == "Jeg ber om innsyn."
    assert mail.subject == "Innsyn"
    assert mail.date is None
    assert isinstance(mail.from_addr, str) and isinstance(mail.message_id, str)
    assert {"bad-header:from", "bad-header:to", "bad-header:message-id"} <= set(mail.problems)


def test_problems_carry_no_personal_data() -> None:
    raw = b'From: "Kari Secret" <kari@[>\r\nSubject: Kari Secret\r\n\r\nKari Secret\r\n'
    mail = parse_mail(raw)
    assert mail.problems
    assert all("Kari" not in p and "Secret" not in p for p in mail.problems)


def test_broken_mime_boundaries() -> None:
    raw = (
        b"From: a@example.no\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
        b"--XYZ\r\nContent-Type: text/plain\r\n\r\nJeg ber om sletting.\r\n"  # never closed
    )
    mail = parse_mail(raw)
    assert "Jeg ber om sletting." in mail.text


def test_non_bytes_input_does_not_raise() -> None:
    assert parse_mail(None).problems == ["empty-message"]  # type: ignore[arg-type]
    assert parse_mail(12345).problems == ["not-bytes"]  # type: ignore[arg-type]
    assert parse_mail("Subject: hei\n\nJeg ber om innsyn.").text == "Jeg ber om innsyn."  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    mail = parse_mail(raw)
    assert isinstance(mail, ParsedMail)
    assert all(isinstance(p, str) for p in mail.problems)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([
    b"From: ", b"To: ", b"Subject: ", b"Content-Type: multipart/mixed; boundary=b",
    b"Content-Type: text/html; charset=", b"x-unknown", b"--b", b"--b--", b"\r\n", b"<p>",
    b"=?utf-8?b?w6b=?=", b"Content-Transfer-Encoding: base64", b"@", b"<", b">", b"\xff\xfe",
    b"Content-Disposition: attachment; filename*=", b"Date: ", b"Received: x; ",
]), max_size=40))
def test_mime_shaped_garbage_never_raises(chunks: list[bytes]) -> None:
    raw = b"".join(chunks)
    assert isinstance(parse_mail(raw), ParsedMail)
    receipt_time_from_headers(raw)


def test_huge_message_is_capped() -> None:
    body = "Jeg ber om innsyn.\n" + ("Linje med fyll for å lage en stor e-post.\n" * 130_000)
    mail = parse_mail(build(body))
    assert len(body) > 5_000_000
    assert mail.text.startswith("Jeg ber om innsyn.")
    assert len(mail.text) <= 100_000
    assert len(mail.full_text) <= 1_000_000
    assert "body-truncated" in mail.problems


def test_huge_html_message_is_capped() -> None:
    html = "<p>Jeg ber om innsyn.</p>" + "<div><span>fyll</span> <b>tekst</b></div>\n" * 120_000
    mail = parse_mail(build(html, subtype="html"))
    assert mail.text.startswith("Jeg ber om innsyn.")
    assert "html-truncated" in mail.problems


# --------------------------------------------------------------------------- attachments


def test_attachments_are_listed_not_parsed() -> None:
    mail = parse_mail(fixture("attachments.eml"))
    listed = {(a.filename, a.content_type) for a in mail.attachments}
    assert listed == {
        ("brev.pdf", "application/pdf"),
        ("notat ø.txt", "text/plain"),
        (None, "message/rfc822"),
    }
    pdf = next(a for a in mail.attachments if a.filename == "brev.pdf")
    assert pdf.size == len(base64.b64decode("JVBERi0xLjQKJUFUVEFDSE1FTlQtQ09OVEVOVAolJUVPRgo="))
    assert all(a.size > 0 for a in mail.attachments)
    assert mail.text == "Jeg ber om sletting av alle opplysninger, se vedlagt brev."
    for hidden in ("ATTACHED-TEXT-NOT-BODY", "INNER-MESSAGE-TEXT", "ATTACHMENT-CONTENT"):
        assert hidden not in mail.full_text


def test_large_binary_attachment() -> None:
    msg = email.message_from_bytes(build("Se vedlegg."), policy=email.policy.default)
    msg.add_attachment(b"\x00" * 5_000_000, maintype="application", subtype="octet-stream",
                       filename="scan.bin")
    mail = parse_mail(msg.as_bytes())
    assert mail.text == "Se vedlegg."
    assert [(a.filename, a.size) for a in mail.attachments] == [("scan.bin", 5_000_000)]


# --------------------------------------------------------------------------- auto detection

AUTO_CASES = [
    ({"Auto_Submitted": "auto-replied"}, "auto-submitted"),
    ({"Auto_Submitted": "auto-generated (vacation)"}, "auto-submitted"),
    ({"List_Id": "<kunder.example.no>"}, "list"),
    ({"List_Unsubscribe": "<mailto:unsub@example.no>"}, "list"),
    ({"Precedence": "bulk"}, "bulk"),
    ({"Precedence": "junk"}, "bulk"),
    ({"Precedence": "list"}, "list"),
    ({"Precedence": "auto_reply"}, "auto-reply"),
    ({"X_Auto_Response_Suppress": "All"}, "auto-response-suppress"),
    ({"Return_Path": "<>"}, "bounce"),
    ({"From": "MAILER-DAEMON@mx.example.no"}, "bounce"),
    ({"From": "Mail Delivery System <postmaster@example.no>"}, "bounce"),
    ({"From": "noreply@example.no"}, "noreply-sender"),
    ({"From": "No Reply <no-reply@example.no>"}, "noreply-sender"),
    ({"From": "donotreply@example.no"}, "noreply-sender"),
    ({"From": "do-not-reply@example.no"}, "noreply-sender"),
    ({"Subject": "Autosvar: Innsyn"}, "auto-reply-subject"),
    ({"Subject": "Automatisk svar: Innsyn"}, "auto-reply-subject"),
    ({"Subject": "Fravær: Sletting"}, "auto-reply-subject"),
    ({"Subject": "Frånvaro"}, "auto-reply-subject"),
    ({"Subject": "Out of Office: Innsyn"}, "auto-reply-subject"),
    ({"Subject": "Automatic reply: Your request"}, "auto-reply-subject"),
    ({"Subject": "Autoreply"}, "auto-reply-subject"),
    ({"Subject": "SV: Auto-Reply: Innsyn"}, "auto-reply-subject"),
    ({"Subject": "Undeliverable: Innsyn"}, "bounce"),
    ({"Subject": "Delivery Status Notification (Failure)"}, "bounce"),
]


@pytest.mark.parametrize(("headers", "reason"), AUTO_CASES)
def test_auto_detection(headers: dict[str, str], reason: str) -> None:
    assert parse_mail(build(**dict(headers))).auto == reason


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Auto_Submitted": "no"},
        {"Auto_Submitted": "No"},
        {"Return_Path": "<ola@example.no>"},
        {"Subject": "Spørsmål om fravær registrert i kundeloggen"},
        {"Subject": "Re: Innsyn [DSR-2026-0042]"},
        {"From": "Noreen Replyson <noreen@example.no>"},
    ],
)
def test_ordinary_mail_is_not_auto(headers: dict[str, str]) -> None:
    assert parse_mail(build(**dict(headers))).auto is None


def test_multipart_report_is_a_bounce() -> None:
    raw = (
        b"From: Ola <ola@example.no>\r\nSubject: Hei\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n"
        b"--R\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n"
        b"--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        b"Final-Recipient: rfc822; x@example.no\r\nAction: failed\r\n--R--\r\n"
    )
    mail = parse_mail(raw)
    assert mail.auto == "bounce"
    assert "could not be delivered" in mail.text


# --------------------------------------------------------------------------- receipt time


def test_receipt_time_is_the_topmost_received() -> None:
    raw = fixture("gmail_nb_reply.eml")
    expected = datetime(2026, 11, 4, 8, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    assert receipt_time_from_headers(raw) == expected
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert receipt_time_from_headers(msg) == expected


def test_receipt_time_falls_back_to_date() -> None:
    raw = fixture("outlook_nb_reply.eml")
    assert receipt_time_from_headers(raw) == datetime(2026, 11, 5, 13, 40, 2, tzinfo=timezone.utc)


def test_receipt_time_skips_a_received_without_date() -> None:
    raw = (
        b"Received: from a by b with local (no date here)\r\n"
        b"Received: from c by d; Sun, 1 Feb 2026 23:30:00 -0000\r\n"
        b"Date: Sat, 31 Jan 2026 10:00:00 +0100\r\n\r\nx"
    )
    when = receipt_time_from_headers(raw)
    assert when == datetime(2026, 2, 1, 23, 30, tzinfo=timezone.utc)
    assert when.tzinfo is not None


def test_receipt_time_none_when_nothing_parses() -> None:
    assert receipt_time_from_headers(b"Subject: x\r\nDate: yesterday\r\n\r\nbody") is None
    assert receipt_time_from_headers(b"") is None


# --------------------------------------------------------------------------- fødselsnummer


def test_fnr_masked_in_text_full_text_and_subject() -> None:
    spaced = f"{FNR[:6]} {FNR[6:]}"
    body = (
        f"Jeg ber om innsyn. Fødselsnummer: {spaced}\n\nMvh Ola\n\n"
        f"Den tir. 3. nov. 2026 kl. 10:12 skrev K <k@branninfo.no>:\n> Oppgi nummer {FNR}\n"
    )
    mail = parse_mail(build(body, Subject=f"Innsyn {FNR}"))
    assert mail.text == f"Jeg ber om innsyn. Fødselsnummer: {FNR_MASK}"
    assert FNR not in mail.full_text and FNR[6:] not in mail.full_text
    assert mail.full_text.count(FNR_MASK) == 2
    assert mail.subject == f"Innsyn {FNR_MASK}"


def test_fnr_masked_in_html_mail() -> None:
    mail = parse_mail(build(f"<p>Mitt nummer: <b>{FNR}</b></p>", subtype="html"))
    assert FNR not in mail.text and FNR not in mail.full_text
    assert FNR_MASK in mail.text


def test_invalid_eleven_digits_stay_in_mail_text() -> None:
    mail = parse_mail(build("Ordrenummer 12345678901."))
    assert mail.text == "Ordrenummer 12345678901."


# --------------------------------------------------------------------------- real messages

REAL_FILES = (
    sorted(p for p in REALWORLD.rglob("*") if p.is_file() and p.name != "README.md")
    if REALWORLD.is_dir()
    else []
)


@pytest.mark.skipif(not REAL_FILES, reason=f"shared MIME set absent at {REALWORLD}")
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_realworld_mime_parses_without_exception(path: Path) -> None:
    raw = path.read_bytes()
    mail = parse_mail(raw)
    assert isinstance(mail, ParsedMail)
    assert all(isinstance(p, str) and len(p) < 80 for p in mail.problems)
    assert isinstance(mail.text, str) and isinstance(mail.full_text, str)
    assert mail.date is None or mail.date.tzinfo is not None
    if mail.full_text:
        assert mail.text.strip()
    receipt = receipt_time_from_headers(raw)
    assert receipt is None or receipt.tzinfo is not None


# --------------------------------------------------------------- fast searches = library searches
# reply_parser starts its regex searches at the first line that could match instead of the top.
# These tests compare the shortcut with the plain search from the top, on mail-like fragments.

_FRAGMENTS = [
    "Hei,", "jeg vil ha innsyn.", "Mvh", "Mvh. Ola", "Med vennlig hilsen", "Kari Nordmann",
    "--", "__", "-_", "> --", "________________________________", "Sendt fra min iPhone",
    "Sent from my phone", "Takk!", "Tusen takk for svaret, men", "Best regards", "Best",
    "> > Hilsen Per", "Fra: Ola <ola@x.no>", "Sendt: 3. mai 2025 10:12", "Til: post@x.no",
    "Emne: Innsyn", "Den man. 5. mai 2025 kl. 10:00 skrev Kundesenter <post@x.no>:",
    "On Mon, 5 May 2025 at 10:00, Ola <", "ola@x.no> wrote:",
    "Den 5. mai 2025 kl. 10.12 skrev Ola Nordmann <", "ola@x.no>:", "-----Original Message-----",
    "---------- Forwarded message ---------", "Begin forwarded message:", "CAUTION: this mail",
    "Disclaimer: this e-mail is confidential", "Konfidensielt: mail", "", "   ", "Slett meg: nå",
    "MVH", "mvh", "REGARDS", "Hei\n\n________________________________", "x\n\n --------------------------------", "ſincerely", "Beſt regards", "İnnsyn", "Cheers", "12:30",
]


def _fast_and_full(text: str) -> None:
    from assistant.understand import reply_parser as rp

    full_header = rp._TEMPLATE.HEADER_REGEX.search(text)
    fast_header = rp._first_header(text)
    assert (fast_header and fast_header.span()) == (full_header and full_header.span())
    full_sig = rp._SIGNATURE.search(text)
    fast_sig = rp._PATTERNS["_signature_regex"].search(text)
    assert (fast_sig and fast_sig.span()) == (full_sig and full_sig.span())
    disclaimers = rp._PATTERNS["_disclaimers_regex"]
    assert disclaimers.findall(text) == disclaimers.pattern.findall(text)
    from mailparser_reply import EmailMessage

    clean = rp._normalise(text)  # what the library is given; it normalises it the same way
    library = EmailMessage(text=clean, languages=[rp.LANGUAGE_KEY], include_english=False)
    assert rp._new_parser(clean).text == library.text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12), st.sampled_from(["\n", "\n\n", " ", "\n \n"]))
def test_shortcut_searches_find_what_a_search_from_the_top_finds(parts, joiner):
    _fast_and_full(joiner.join(parts))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="Mvh-_:> \n\tTakSsſıİ", max_size=80))
def test_shortcut_searches_agree_on_noise(text):
    _fast_and_full(text)


def test_header_search_starts_a_line_above_the_first_colon():
    """A wrapped attribution has its first colon on its second line."""
    _fast_and_full("Ja, slett alt.\n\nDen 5. mai 2025 kl. 10.12 skrev Ola Nordmann <\nola@x.no>:\n> Hei")


def test_shortcut_searches_agree_on_every_labelled_message():
    data = Path(__file__).parent / "data"
    import json

    for path in sorted(data.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                _fast_and_full(json.loads(line)["body"])

"""Hostile mail: every shape that once stalled, bloated or blinded the parser gives a bounded,
safe ParsedMail with its outer headers and a problem code. Results only, never wall-clock time
(bench/hostile_mail.py times the same shapes)."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.cli import cli
from assistant.mail import parse as parse_module
from assistant.mail.parse import ParsedMail, html_to_text, parse_mail
from assistant.mail.safe import LOOKALIKE_LT, safe_id, safe_line, safe_text

sys.path.insert(0, str(Path(__file__).parent))
from hostile_shapes import FROM, REQUEST, SHAPES, message  # noqa: E402

DATA = Path(__file__).parent / "data" / "mail"
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                       "\u2066-\u2069\ufeff\ud800-\udfff]")
LIVE_MARKUP = re.compile(r"<[A-Za-z/!?]")


def text_fields(mail: ParsedMail) -> list[str]:
    return [mail.subject, mail.from_name, mail.from_addr, *mail.to, *mail.cc, *mail.reply_to,
            mail.message_id, mail.in_reply_to, *mail.references, mail.text, mail.full_text,
            mail.return_path or "", *(a.filename or "" for a in mail.attachments)]


def assert_sane(mail: ParsedMail) -> None:
    """Bounded sizes, no controls or invisible characters, no live markup in any field."""
    assert isinstance(mail, ParsedMail)
    assert len(mail.subject) <= parse_module.MAX_SUBJECT_CHARS
    assert len(mail.from_name) <= parse_module.MAX_NAME_CHARS
    assert len(mail.to) <= parse_module.MAX_ADDRESSES and len(mail.cc) <= parse_module.MAX_ADDRESSES
    assert len(mail.references) <= parse_module.MAX_REFERENCES
    assert len(mail.full_text) <= parse_module.MAX_FULL_TEXT_CHARS
    assert len(mail.text) <= parse_module.MAX_SCORING_CHARS
    assert len(mail.attachments) <= parse_module.MAX_PARTS
    assert all(isinstance(p, str) and len(p) < 80 for p in mail.problems)
    for value in text_fields(mail):
        assert not FORBIDDEN.search(value.replace("\n", "").replace("\t", "")), repr(value[:80])
    for value in text_fields(mail):
        if value not in (mail.message_id, mail.in_reply_to) and value not in mail.references:
            assert not LIVE_MARKUP.search(value), repr(value[:80])


def outer_kept(mail: ParsedMail) -> None:
    assert mail.from_addr == "ola@example.no"
    assert mail.from_name == "Ola Nordmann"
    assert mail.subject == "Innsyn"
    assert mail.message_id == "<hostile-1@example.no>"
    assert mail.date is not None


# --------------------------------------------------------------------------- one test per shape

HTML_SHAPES = {
    "script-unclosed-20k": "html-too-deep",
    "script-unclosed-300k": "html-truncated",
    "style-unclosed-300k": "html-truncated",
    "comment-unclosed-300k": "html-truncated",
    "nested-b-100k": "html-too-deep",
    "nested-div-10k": "html-too-deep",
    "nested-div-100k": "html-too-deep",
    "misnested-b-p-100k": "html-too-deep",
    "td-cells-50k": "html-truncated",
    "p-flat-125k": "html-truncated",
}


@pytest.mark.parametrize("name", sorted(HTML_SHAPES))
def test_hostile_html_keeps_the_request(name: str) -> None:
    mail = parse_mail(SHAPES[name]())
    outer_kept(mail)
    assert mail.html_only
    assert mail.text.startswith(REQUEST)
    assert HTML_SHAPES[name] in mail.problems
    assert_sane(mail)


def test_deep_html_text_inside_the_bound_is_kept() -> None:
    mail = parse_mail(SHAPES["nested-div-10k"]())
    assert "DYP-TEKST" in mail.full_text  # tags past the bound are dropped, never their text


def test_entity_encoded_markup_is_not_live() -> None:
    mail = parse_mail(SHAPES["entity-markup"]())
    outer_kept(mail)
    for text in (mail.text, mail.full_text):
        assert "<script" not in text and "<img" not in text and "&lt;b" not in text
        assert f"{LOOKALIKE_LT}script>alert(1){LOOKALIKE_LT}/script>" in text
    assert f"{LOOKALIKE_LT}img" in html_to_text("<p>&lt;img src=x&gt;</p>")
    assert_sane(mail)


@pytest.mark.parametrize("name", ["subject-ew-16k", "subject-ew-100k"])
def test_subject_of_many_encoded_words_is_capped(name: str) -> None:
    mail = parse_mail(SHAPES[name]())
    assert mail.from_addr == "ola@example.no"
    assert mail.subject.startswith("æøæø")
    assert "header-truncated" in mail.problems
    assert mail.text == REQUEST
    assert_sane(mail)


@pytest.mark.parametrize(("name", "code"), [
    ("content-type-params-20k", "header-truncated"),
    ("header-line-1mb", "header-truncated"),
    ("received-10k", "too-many-headers"),
])
def test_oversized_headers_are_capped(name: str, code: str) -> None:
    mail = parse_mail(SHAPES[name]())
    outer_kept(mail)
    assert mail.text == REQUEST
    assert code in mail.problems
    assert_sane(mail)


def test_huge_references_keep_the_root_and_the_newest() -> None:
    mail = parse_mail(SHAPES["references-600k"]())
    outer_kept(mail)
    assert len(mail.references) == parse_module.MAX_REFERENCES
    assert mail.references[0] == "<ref0@example.no>"
    assert mail.references[-1] == "<ref32999@example.no>"
    assert {"too-many-references", "header-truncated"} <= set(mail.problems)


def test_twenty_thousand_recipients_are_capped() -> None:
    mail = parse_mail(SHAPES["to-20k"]())
    outer_kept(mail)
    assert mail.to == ["kundesenter@branninfo.no"]
    assert len(mail.cc) == parse_module.MAX_ADDRESSES and mail.cc[0] == "user0@example.no"
    assert "too-many-addresses" in mail.problems


@pytest.mark.parametrize("name", ["mime-nested-1000", "rfc822-nested-1000"])
def test_deep_mime_keeps_the_outer_headers(name: str) -> None:
    mail = parse_mail(SHAPES[name]())
    outer_kept(mail)
    assert "mime-too-deep" in mail.problems
    assert_sane(mail)


def test_deep_rfc822_keeps_the_outer_text() -> None:
    mail = parse_mail(SHAPES["rfc822-nested-1000"]())
    assert mail.text == REQUEST
    assert "INNER-TEXT" not in mail.full_text
    assert [a.content_type for a in mail.attachments] == ["message/rfc822"]


def test_mime_nesting_inside_the_bound_is_read() -> None:
    from hostile_shapes import nested_multipart

    mail = parse_mail(nested_multipart(parse_module.MAX_MIME_DEPTH - 1))
    assert mail.text == REQUEST
    assert "mime-too-deep" not in mail.problems


def test_fifty_thousand_parts_stop_at_the_bound() -> None:
    mail = parse_mail(SHAPES["parts-50k"]())
    outer_kept(mail)
    assert mail.text.startswith(REQUEST)
    assert {"too-many-parts", "message-truncated"} <= set(mail.problems)
    assert_sane(mail)


@pytest.mark.parametrize(("name", "code"), [
    ("body-5mb-one-line", "body-truncated"),
    ("body-5m-blank-lines", "message-truncated"),
    ("body-short-lines-10mb", "message-truncated"),
])
def test_huge_bodies_are_capped(name: str, code: str) -> None:
    mail = parse_mail(SHAPES[name]())
    outer_kept(mail)
    assert mail.text.startswith(REQUEST.split(".")[0])
    assert code in mail.problems
    assert_sane(mail)


def test_base64_with_garbage_keeps_what_decodes() -> None:
    mail = parse_mail(SHAPES["base64-garbage"]())
    outer_kept(mail)
    assert mail.text.startswith(REQUEST)
    assert_sane(mail)


def test_bidi_zero_width_and_nul_are_removed() -> None:
    mail = parse_mail(SHAPES["bidi-zero-width-nul"]())
    assert mail.subject == "Innsyn olleh"
    assert mail.text == "Jeg ber om innsyn.[31m"
    assert mail.reply_to == ["ola@example.no"]
    assert "bidi-controls" in mail.problems
    assert_sane(mail)
    raw = message("Hei", headers="").replace(
        FROM.encode(), "Ola \u202eNordmann\u202c <ola\u200b@example.no>".encode())
    mail = parse_mail(raw)
    assert "\u202e" not in mail.from_name and "\u200b" not in mail.from_addr
    assert "bidi-controls" in mail.problems


def test_zero_width_cannot_hide_a_personal_number_from_the_mask() -> None:
    from stdnum.no import fodselsnummer

    number = next(f"240688{i:03d}{c}" for i in range(100, 500) for c in
                  [fodselsnummer.calc_check_digit1(f"240688{i:03d}")]
                  if len(c) == 1 and fodselsnummer.is_valid(
                      f"240688{i:03d}{c}{fodselsnummer.calc_check_digit2(f'240688{i:03d}{c}')}"))
    number += fodselsnummer.calc_check_digit2(number)
    hidden = number[:6] + "\u200b" + number[6:]
    mail = parse_mail(message(f"Mitt nummer er {hidden}.", subject=f"Innsyn {hidden}"))
    assert number not in mail.text and number not in mail.subject
    assert "[fødselsnummer]" in mail.text and "[fødselsnummer]" in mail.subject


# --------------------------------------------------------------------------- safe text


def test_safe_text_covers_every_control_and_format_character() -> None:
    """The hand-written ranges in safe.py against this Python's Unicode database."""
    missed = [hex(c) for c in range(sys.maxunicode + 1)
              if unicodedata.category(chr(c)) in ("Cc", "Cf") and chr(c) not in "\n\t"
              and safe_text(chr(c)) not in ("", "\n")]
    assert missed == []
    assert safe_text("\r") == safe_text("\x85") == "\n"  # line breaks stay line breaks


@pytest.mark.parametrize(("raw", "expected"), [
    ("a\x00b\x1b[0mc\x7f\x85d", "ab[0mc\nd"),
    ("line\r\nnext\u2028third\ttab", "line\nnext\nthird\ttab"),
    ("<script>x</script> <!-- c --> <?php <!DOCTYPE a <@U1> <#C1> a < b", None),
    ("&lt;script&gt; &#60;b&#62; &#x3C;i&gt; &lt", None),
])
def test_safe_text(raw: str, expected: str | None) -> None:
    out = safe_text(raw)
    if expected is not None:
        assert out == expected
    assert not LIVE_MARKUP.search(out) and "<@" not in out and "<#" not in out
    assert not re.search(r"&lt;?[a-z]|&#0*60;?[a-z]|&#x0*3c;?[a-z]", out, re.I)
    assert safe_text(out) == out  # idempotent
    assert "a < b" in safe_text("a < b")


def test_safe_line_and_safe_id() -> None:
    assert safe_line("  Ola\n\tNordmann\u202e ") == "Ola Nordmann"
    assert safe_line("x" * 50, 10) == "x" * 10
    assert safe_id("<abc\u200b@ex\x00.no>") == "<abc@ex.no>"
    assert safe_id("<" + "a" * 2000 + ">") == ""


# --------------------------------------------------------------------------- random hostile mail

INGREDIENTS = [
    "<script>" * 500, "<div>" * 700, "<b>x</p>" * 300, "&lt;script&gt;", "<!--", "\x00", "\u202e",
    "\u200b", "\ufeff", "\x1b[2J", "=?utf-8?b?w6bDuA==?= " * 300, "a" * 9000, "<td>c</td>" * 300,
    "Jeg ber om innsyn.", "<blockquote>" * 600, "&#60;img&#62;", "\r\n", "\n\n",
]


@st.composite
def hostile_messages(draw) -> bytes:
    def blob() -> str:
        return "".join(draw(st.lists(st.sampled_from(INGREDIENTS), max_size=6)))

    depth = draw(st.integers(0, 40))
    body = draw(st.sampled_from(["plain", "html"]))
    content = blob()
    part = (f"Content-Type: text/{body}; charset=utf-8\r\n\r\n{content}\r\n")
    for level in range(depth):
        part = (f"Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n"
                f"--b{level}\r\n{part}--b{level}--\r\n")
    head, _, rest = part.partition("\r\n\r\n")
    headers = (f"From: {blob()[:3000]} <ola@example.no>\r\nSubject: {blob()}\r\n"
               f"To: {', '.join(['a@b.no'] * draw(st.integers(0, 300)))}\r\n"
               f"References: {' '.join(f'<r{i}@x>' for i in range(draw(st.integers(0, 200))))}\r\n"
               f"{head}\r\n\r\n")
    return (headers + rest).encode("utf-8", "surrogatepass")


@settings(max_examples=60, deadline=None)
@given(hostile_messages())
def test_random_hostile_mail_gives_a_sane_result(raw: bytes) -> None:
    mail = parse_mail(raw)
    assert_sane(mail)


# --------------------------------------------------------------------------- dsr classify --eml


def test_classify_eml_file() -> None:
    result = CliRunner().invoke(cli, ["classify", "--eml", str(DATA / "outlook_nb_reply.eml"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["intents"] == ["opt_out"] and data["language"] == "nb"
    assert data["from"] == "kari.nordmann@example.no" and data["org"] == "bagges"
    assert data["auto"] is None and data["problems"] == []
    assert data["subject"] == "SV: Sletting av kundeopplysninger"


def test_classify_eml_stdin_and_explain() -> None:
    raw = (DATA / "gmail_nb_reply.eml").read_bytes()
    result = CliRunner().invoke(cli, ["classify", "--eml", "-", "--explain"], input=raw)
    assert result.exit_code == 0, result.output
    # A reply in an access case that adds erasure ("sletter kontoen min når innsynet er
    # levert"): the new request is erasure; the access it mentions is the case's own.
    assert "intents: erasure\n" in result.stdout
    assert "language: nb" in result.stdout


def test_classify_eml_of_a_hostile_message() -> None:
    result = CliRunner().invoke(cli, ["classify", "--eml", "-", "--json"],
                                input=SHAPES["bidi-zero-width-nul"]())
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["subject"] == "Innsyn olleh" and "bidi-controls" in data["problems"]
    assert "access" in data["intents"]


@pytest.mark.parametrize("target", ["missing.eml", "folder", "/dev/zero", "big.eml"])
def test_classify_eml_unreadable_is_one_line_and_exit_2(tmp_path, monkeypatch, target: str) -> None:
    monkeypatch.setenv("DSR_SMTP__MAX_MESSAGE_BYTES", "1000")
    (tmp_path / "folder").mkdir()
    (tmp_path / "big.eml").write_bytes(message("x" * 2000))
    path = target if target.startswith("/") else str(tmp_path / target)
    result = CliRunner().invoke(cli, ["classify", "--eml", path])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "--eml" in result.stderr


def test_classify_eml_refuses_text_with_it() -> None:
    result = CliRunner().invoke(cli, ["classify", "--eml", "-", "hei"])
    assert result.exit_code == 2

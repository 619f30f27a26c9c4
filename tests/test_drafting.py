"""Drafted replies: right language, right date format, the organisation's own policy quoted where
it speaks to the right, the right stated in plain words where it does not, and no loose ends."""

from __future__ import annotations

import re
import shutil
from datetime import date

import pytest

from assistant.drafting import (
    DEFAULT_POLICIES,
    DEFAULT_TEMPLATES,
    Draft,
    OrgInfo,
    draft_acknowledgement,
    draft_extension,
    draft_reply,
    draft_verification,
    format_date,
    reply_language,
)
from assistant.understand.policies import INTENTS, load_policies, sections_for_intent
from assistant.understand.policy_check import flagged_sections
from assistant.understand.records import find_record

RIGHTS = [i for i in INTENTS if i != "question"]
REF = "DSR-2026-0042"
DUE = date(2026, 3, 2)


@pytest.fixture(scope="module")
def policies():
    return load_policies(DEFAULT_POLICIES)


@pytest.fixture(scope="module")
def orgs(policies):
    return {org: OrgInfo.from_policy(p) for org, p in policies.items()}


def quoted_blocks(body: str) -> dict[str, str]:
    """Map «Heading» -> the '> ' lines right under it."""
    blocks = {}
    for match in re.finditer(r"^«(.+)»\n((?:>.*\n?)+)", body, re.MULTILINE):
        blocks[match.group(1)] = match.group(2)
    return blocks


def assert_clean(draft: Draft) -> None:
    """No template syntax, no HTML, no unfilled values left in a mail."""
    for text in (draft.subject, draft.body):
        assert "{{" not in text and "{%" not in text and "}}" not in text
        assert not re.search(r"</?[a-z]+[ >]", text)
        assert "None" not in text
    assert "\n\n\n" not in draft.body
    assert REF in draft.subject


# --------------------------------------------------------------------------- dates, language


@pytest.mark.parametrize(
    "d,language,expected",
    [
        (date(2026, 3, 2), "nb", "2. mars 2026"),
        (date(2026, 3, 2), "en", "2 March 2026"),
        (date(2025, 12, 31), "nb", "31. desember 2025"),
        (date(2026, 1, 1), "en", "1 January 2026"),
        (date(2026, 5, 17), "nn", "17. mai 2026"),
        (date(2026, 8, 9), "sv", "9. august 2026"),
    ],
)
def test_format_date(d, language, expected):
    assert format_date(d, language) == expected


def test_every_month_has_its_own_name():
    for language in ("nb", "en"):
        names = {format_date(date(2026, m, 1), language).split()[1] for m in range(1, 13)}
        assert len(names) == 12


@pytest.mark.parametrize(
    "requested,expected",
    [("nb", "nb"), ("nb-NO", "nb"), ("no", "nb"), ("nn", "nn"), ("nno", "nn"), ("sv", "nb"),
     ("da", "nb"),
     ("en", "en"), ("en-GB", "en"), ("de", "en"), ("", "nb")],
)
def test_reply_language(requested, expected):
    assert reply_language(requested) == expected


def test_a_template_folder_for_a_language_is_used_when_it_exists(tmp_path):
    shutil.copytree(DEFAULT_TEMPLATES / "nb", tmp_path / "nb")
    shutil.copytree(DEFAULT_TEMPLATES / "nb", tmp_path / "sv")
    assert reply_language("sv", tmp_path) == "sv"
    assert reply_language("da", tmp_path) == "nb"


def test_every_language_has_the_same_templates_and_labels():
    names = {p.name for p in (DEFAULT_TEMPLATES / "nb").glob("*.j2")}
    expected = {f"{i}.txt.j2" for i in INTENTS} | {
        "acknowledgement.txt.j2", "verification.txt.j2", "reply.txt.j2", "extension.txt.j2",
        "unclear.txt.j2"}
    assert expected <= names
    assert {p.name for p in (DEFAULT_TEMPLATES / "en").glob("*.j2")} == names


# --------------------------------------------------------------------------- acknowledgement


def test_acknowledgement_in_norwegian_has_reference_date_and_code(orgs):
    draft = draft_acknowledgement(orgs["branninfo"], REF, DUE, "nb", "483920", True)
    assert_clean(draft)
    assert draft.kind == "acknowledgement" and draft.language == "nb"
    assert "2. mars 2026" in draft.body
    assert "483920" in draft.body and "engangskode" in draft.body
    assert "kundesenter@branninfo.no" in draft.body


def test_acknowledgement_in_english(orgs):
    draft = draft_acknowledgement(orgs["bagges"], REF, DUE, "en", "111222", True)
    assert_clean(draft)
    assert "2 March 2026" in draft.body and "111222" in draft.body
    assert "one-time code" in draft.body


def test_acknowledgement_without_verification_shows_no_code(orgs):
    draft = draft_acknowledgement(orgs["bagges"], REF, DUE, "nb", "999888", False)
    assert "999888" not in draft.body and "engangskode" not in draft.body
    no_code = draft_acknowledgement(orgs["bagges"], REF, DUE, "nb", None, True)
    assert "engangskode" not in no_code.body and "bekrefte identiteten" in no_code.body


@pytest.mark.parametrize("language", ["sv", "da"])
def test_scandinavian_requests_are_answered_in_bokmal(orgs, language):
    draft = draft_acknowledgement(orgs["plania"], REF, DUE, language, "123456", True)
    assert draft.language == "nb" and "2. mars 2026" in draft.body
    reply = draft_reply(orgs["plania"], None, REF, ["access"], language, DUE)
    assert reply.language == "nb" and "innsyn" in reply.subject


def test_nynorsk_requests_are_answered_in_nynorsk(orgs):
    draft = draft_acknowledgement(orgs["plania"], REF, DUE, "nn", "123456", True)
    assert draft.language == "nn" and "2. mars 2026" in draft.body and "ikkje" in draft.body
    reply = draft_reply(orgs["plania"], None, REF, ["access"], "nn", DUE)
    assert reply.language == "nn" and "innsyn" in reply.subject
    assert "førespurnaden" in reply.body.lower()


def test_verification_draft(orgs):
    with_code = draft_verification(orgs["proffsecurity"], REF, "nb", "424242", DUE)
    assert_clean(with_code)
    assert "424242" in with_code.body and "2. mars 2026" in with_code.body
    without = draft_verification(orgs["proffsecurity"], REF, "en", None)
    assert_clean(without)
    assert "registered with us" in without.body


# --------------------------------------------------------------------------- replies per intent


def excerpt_in_section(block: str, section_text: str) -> bool:
    """Every part of a quoted excerpt is the section's own words (cut at '[…]')."""
    quoted = " ".join(block.replace(">", " ").split())
    text = " ".join(section_text.split())
    return all(part.strip() in text for part in quoted.split("[…]") if part.strip())


@pytest.mark.parametrize("language", ["nb", "en"])
@pytest.mark.parametrize("intent", RIGHTS)
def test_reply_for_each_intent_quotes_at_most_one_tagged_unflagged_section(policies, orgs,
                                                                          intent, language):
    for org, policy in policies.items():
        draft = draft_reply(orgs[org], policy, REF, [intent], language, DUE)
        assert_clean(draft)
        assert draft.kind == intent and draft.language == language
        tagged = {s.id for s, _ in sections_for_intent(policy, intent, k=10)}
        flagged = set(flagged_sections(policy, find_record(org)))
        assert set(draft.quoted_sections) <= tagged - flagged
        assert len(draft.quoted_sections) <= 1
        if language == "en" or intent in {"access", "erasure"}:
            # A Norwegian policy is never pasted into an English reply; access and erasure
            # are answered from the record of processing.
            assert draft.quoted_sections == () and "\n> " not in draft.body
        blocks = quoted_blocks(draft.body)
        assert len(blocks) == len(draft.quoted_sections)
        for section_id in draft.quoted_sections:
            section = policy.section(section_id)
            assert excerpt_in_section(blocks[section.heading], section.text)
            assert len(blocks[section.heading].replace(">", " ").split()) <= 62
        if not tagged and intent not in {"access", "erasure"}:
            assert draft.quoted_sections == () and "\n> " not in draft.body
            phrase = "beskriver ikke" if language == "nb" else "does not describe"
            assert phrase in draft.body
        day = "2. mars 2026" if language == "nb" else "2 March 2026"
        # opt-out acts at once; erasure and rectification state what was done, once staff did it
        assert day in draft.body or intent in {"opt_out", "erasure", "rectification"}


def test_bagges_portability_states_the_right_without_quoting(policies, orgs):
    draft = draft_reply(orgs["bagges"], policies["bagges"], REF, ["portability"], "nb", DUE)
    assert draft.quoted_sections == ()
    assert "maskinlesbart" in draft.body and "artikkel 20" in draft.body
    assert "Personvernerklæringen vår beskriver ikke denne retten" in draft.body
    assert "«" not in draft.body and not re.search(r"^>", draft.body, re.MULTILINE)
    english = draft_reply(orgs["bagges"], policies["bagges"], REF, ["portability"], "en", DUE)
    assert "does not describe this right" in english.body and "Article 20" in english.body


def test_branninfo_portability_quotes_its_json_section(policies, orgs):
    draft = draft_reply(orgs["branninfo"], policies["branninfo"], REF, ["portability"], "nb", DUE)
    assert draft.quoted_sections == ("retten-til-a-ta-med-seg-data-dataportabilitet",)
    assert "> " in draft.body and "JSON" in draft.body
    assert draft.subject == f"Din forespørsel om dataportabilitet [{REF}]"


@pytest.mark.parametrize("language", ["nb", "en"])
def test_an_unsettled_erasure_says_it_is_not_ready_and_promises_nothing(policies, orgs,
                                                                        language):
    for org, policy in policies.items():
        info = orgs[org]
        draft = draft_reply(info, policy, REF, ["erasure"], language, DUE)
        assert not draft.ready
        for system in info.systems:
            assert system in draft.body  # in the line for staff
        assert "sletter vi opplysningene om deg i disse systemene" not in draft.body
        assert "erase the data about you in these systems" not in draft.body
        assert "produktansvar" not in draft.body.lower()
        assert "forbrukerkjøp" not in draft.body.lower()


def test_erasure_without_known_systems_or_record_is_not_ready(orgs):
    bare = OrgInfo(id="x", name="X AS", addresses=(), systems=())
    draft = draft_reply(bare, None, REF, ["erasure"], "nb", DUE)
    assert not draft.ready and "ikke klart" in draft.body
    assert "beskriver ikke" not in draft.body  # with no policy we claim nothing about it


def test_several_intents_make_one_mail_and_quote_a_section_once(policies, orgs):
    draft = draft_reply(orgs["proffsecurity"], policies["proffsecurity"], REF,
                        ["opt_out", "objection", "restriction"], "nb", DUE)
    assert_clean(draft)
    assert draft.kind == "restriction+objection+opt_out"
    for heading in ("Begrensning av behandlingen", "Protest mot behandlingen",
                    "Reservasjon mot markedsføring"):
        assert heading in draft.body
    assert draft.body.count("«DINE RETTIGHETER»\n>") == 1  # quoted once, not per right
    assert len(draft.quoted_sections) == len(set(draft.quoted_sections))
    assert "begrensning av behandlingen, protest mot behandlingen og reservasjon" in draft.subject


def test_no_intents_asks_what_they_want_and_lists_rights(orgs, policies):
    for language, words in (("nb", ["Innsyn", "Sletting", "Dataportabilitet", "Datatilsynet"]),
                            ("en", ["Access", "Erasure", "Data portability", "Datatilsynet"])):
        draft = draft_reply(orgs["bagges"], policies["bagges"], REF, [], language, DUE)
        assert_clean(draft)
        assert draft.kind == "unclear" and draft.quoted_sections == ()
        for word in words:
            assert word in draft.body


def test_question_is_answered_from_the_record_then_one_short_quote(policies, orgs):
    draft = draft_reply(orgs["branninfo"], policies["branninfo"], REF, ["question"], "nb", DUE,
                        question="Hvor lenge lagrer dere telefonopptak?")
    assert_clean(draft)
    first = draft.body.split("\n\n")[2]  # after the greeting and the thanks
    assert "seks uker" in first  # the direct answer, from the record, comes first
    assert draft.quoted_sections == ("opptak",)
    assert "«Opptak»\n> Som standardinnstilling lagrer Branninfo.no telefonsamtaler i seks uker." \
        in draft.body
    assert "telefonopptak" not in draft.body  # the requester's own words are not echoed
    assert len(draft.body.split()) < 250
    english = draft_reply(orgs["branninfo"], policies["branninfo"], REF, ["question"], "en", DUE,
                          question="How long do you keep call recordings?")
    assert "six weeks" in english.body and "Your question" in english.subject
    assert english.quoted_sections == ()  # the policy is Norwegian: described, never pasted


def test_question_the_policy_cannot_answer_quotes_nothing(policies, orgs):
    draft = draft_reply(orgs["bagges"], policies["bagges"], REF, ["question"], "nb", DUE,
                        question="Hva koster en ny tenningsplugg?")
    assert draft.quoted_sections == () and "\n> " not in draft.body
    assert "sier ikke noe direkte om dette" in draft.body
    assert "[[TIL SAKSBEHANDLER" in draft.body and not draft.ready
    assert len(draft.body.split()) < 250


def test_reply_with_extension_shows_new_date_and_reason(policies, orgs):
    draft = draft_reply(orgs["bagges"], policies["bagges"], REF, ["access"], "nb", DUE,
                        extended_due=date(2026, 5, 4), extension_reason="mange systemer")
    assert "4. mai 2026" in draft.body and "mange systemer" in draft.body
    assert "2. mars 2026" not in draft.body


@pytest.mark.parametrize("language,day", [("nb", "4. mai 2026"), ("en", "4 May 2026")])
def test_extension_draft(orgs, language, day):
    draft = draft_extension(orgs["branninfo"], REF, language, date(2026, 5, 4),
                            "forespørselen gjelder mange systemer")
    assert_clean(draft)
    assert draft.kind == "extension"
    assert day in draft.body and "forespørselen gjelder mange systemer" in draft.body
    assert "12" in draft.body


def test_html_in_values_is_never_inserted(orgs):
    org = OrgInfo(id="x", name="<b>Evil</b> AS", addresses=("<post@x.no>",),
                  systems=("<script>alert(1)</script>CRM",))
    draft = draft_reply(org, None, REF, ["erasure"], "en", DUE)
    assert "<b>" not in draft.body and "<script>" not in draft.body
    assert "Evil AS" in draft.body and "alert(1)CRM" in draft.body
    assert "<post@x.no>" in draft.body  # an address in angle brackets is not HTML


def test_unknown_intent_is_refused(orgs):
    with pytest.raises(ValueError, match="unknown intent"):
        draft_reply(orgs["bagges"], None, REF, ["hack"], "nb", DUE)


def test_a_general_retention_question_is_answered_for_every_activity_of_the_record(policies, orgs):
    draft = draft_reply(orgs["bagges"], policies["bagges"], REF, ["question"], "nb", DUE,
                        question="Hvor lenge lagrer dere opplysningene mine?")
    assert "15 år" in draft.body and "bokføringsloven § 13" in draft.body
    assert draft.quoted_sections == () and draft.ready


def test_a_question_on_a_flagged_passage_points_staff_to_it_without_quoting(policies, orgs):
    draft = draft_reply(orgs["infracomfort"], policies["infracomfort"], REF, ["question"], "nb",
                        DUE, question="Bruker dere informasjonskapsler, og hva brukes de til?")
    assert draft.quoted_sections == () and not draft.ready
    assert "«Informasjonskapsler»" in draft.body and "dsr policies check" in draft.body

"""Records of processing and the replies composed from them, read as a privacy officer reads them.

These tests check the CONTENT the law requires, not the wording: an access reply gives every
Art. 15(1)(a-h) and 15(2) element from the organisation's record; an erasure reply says what was
deleted where and what is kept under which provision until when, and never names a law that
imposes no duty to keep; a question gets a direct answer or an honest "we do not say"; an English
reply carries no Norwegian policy text; a flagged passage is never quoted; `dsr policies check`
lists the stale passages of the five seed policies with file:line.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import cli
from assistant.config import load_settings
from assistant.drafting import Settled, draft_reply
from assistant.understand.policies import load_policies
from assistant.understand.policy_check import check_policy_file, flagged_sections, load_rules
from assistant.understand.records import (
    RecordError,
    check_systems,
    find_record,
    load_record,
    record_path,
)
from assistant.workflow import org_info

ORGS = ("branninfo", "infracomfort", "plania", "proffsecurity", "bagges")
REF = "DSR-2026-0042"
DUE = date(2026, 3, 2)
SHIPPED = Path(__file__).resolve().parent.parent / "policies"


@pytest.fixture(scope="module")
def settings():
    return load_settings(None)


@pytest.fixture(scope="module")
def policies():
    return load_policies(SHIPPED)


@pytest.fixture(scope="module")
def records():
    return {org: find_record(org) for org in ORGS}


def info(settings, org):
    """The OrgInfo the workflow builds: the configured systems and addresses."""
    return org_info(settings.organization(org))


def squash(text: str) -> str:
    return " ".join(text.split())


def norwegian_sentences(policy) -> list[str]:
    """Sentences of six words or more from the policy's sections."""
    out = []
    for section in policy.sections:
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", section.text):
            if len(sentence.split()) >= 6:
                out.append(squash(sentence))
    return out


# --------------------------------------------------------------------------- the records


def test_every_seed_organisation_has_a_record_naming_only_its_configured_systems(
        settings, policies, records):
    for org in ORGS:
        record = records[org]
        assert record is not None and record.org == org
        check_systems(record, settings.organization(org).systems)
        section_ids = {s.id for s in policies[org].sections}
        for activity in record.activities:
            assert set(activity.sections) <= section_ids, (org, activity.id)
            for text in (activity.name, activity.purpose, activity.retention.text):
                assert text.nb and text.en
            assert len(activity.categories.nb) == len(activity.categories.en)
            assert activity.retention.law or activity.retention.why
            for recipient in activity.recipients:
                assert recipient.eea or recipient.safeguard is not None


def test_accounting_is_kept_under_bokforingsloven_13_and_marked_to_confirm(records):
    for org in ORGS:
        laws = {a.retention.law for a in records[org].activities if a.retention.law}
        assert laws == {"bokføringsloven § 13"}, org
        for activity in records[org].activities:
            if activity.retention.law:
                assert activity.retention.period == "P5Y"
                assert activity.retention.confirm and activity.retention.note
    for record in records.values():
        text = record.path.read_text(encoding="utf-8")
        # no record names these acts as a duty to keep (only in notes explaining why not)
        for activity in record.activities:
            assert "produktansvar" not in activity.retention.law.lower()
            assert "forbrukerkjøp" not in activity.retention.law.lower()
        assert "Privacy Shield" not in squash(text).replace("relies on 'Privacy Shield'", "")


def test_marketing_systems_are_suppressed_not_erased(records):
    assert records["proffsecurity"].suppression_systems() == ("Mailchimp",)
    assert records["infracomfort"].suppression_systems() == ("Nyhetsbrev",)
    assert records["branninfo"].suppression_systems() == ()  # TMG and CRM hold sales too


def test_a_record_error_names_file_and_line(tmp_path):
    text = (SHIPPED / "bagges.record.toml").read_text(encoding="utf-8")
    broken = text.replace('name = { nb = "Telefonlogg", en = "Phone log" }',
                          'name = { nb = "Telefonlogg" }')
    path = tmp_path / "bagges.record.toml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        load_record(path)
    line = next(i for i, l in enumerate(broken.splitlines(), 1) if 'nb = "Telefonlogg" }' in l)
    assert str(caught.value).startswith(f"{path}:{line}: 'name' needs a text in en")


def test_an_unknown_system_is_refused_with_the_activity_line(settings, tmp_path):
    text = (SHIPPED / "bagges.record.toml").read_text(encoding="utf-8")
    path = tmp_path / "bagges.record.toml"
    path.write_text(text.replace('systems = ["Phonero", "Outlook"]', 'systems = ["Fax"]'),
                    encoding="utf-8")
    with pytest.raises(RecordError, match=r"bagges\.record\.toml:\d+: activity 'phone_log' "
                                          r"names system 'Fax'"):
        check_systems(load_record(path), settings.organization("bagges").systems)


def test_dsr_check_validates_records_from_the_operator_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "ops-policies"
    folder.mkdir()
    text = (SHIPPED / "bagges.record.toml").read_text(encoding="utf-8")
    (folder / "bagges.record.toml").write_text(text.replace('"Phonero", "Outlook"', '"Fax"'),
                                               encoding="utf-8")
    (tmp_path / "dsr.toml").write_text('[data]\npolicies_dir = "ops-policies"\n')
    result = CliRunner().invoke(cli, ["check", "--config", str(tmp_path / "dsr.toml")])
    assert result.exit_code == 2
    assert result.stderr.startswith(str(folder / "bagges.record.toml") + ":")
    assert "'Fax'" in result.stderr
    # the operator's record wins over the shipped one, as every data file does
    from assistant import resources
    resources.configure(load_settings(tmp_path / "dsr.toml"))
    try:
        assert record_path("bagges", SHIPPED / "bagges.md") == folder / "bagges.record.toml"
    finally:
        resources.reset()


def test_dsr_check_shows_the_records_in_its_summary():
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0
    assert "record: " in result.stdout and "bokføringsloven § 13" in result.stdout
    assert "suppressed, not erased: Mailchimp" in result.stdout
    assert "outside the EEA: Zendesk" in result.stdout


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize("language", ["nb", "en"])
@pytest.mark.parametrize("org", ORGS)
def test_access_reply_gives_every_article_15_element_from_the_record(
        settings, policies, records, org, language):
    record = records[org]
    draft = draft_reply(info(settings, org), policies[org], REF, ["access"], language, DUE,
                        verified=True)
    body = squash(draft.body)
    for activity in record.activities:
        assert activity.purpose.get(language) in body                      # (a)
        for category in activity.categories.get(language):                 # (b)
            assert category in body
        for recipient in activity.recipients:                              # (c)
            assert recipient.name in body
        assert activity.retention.text.get(language) in body               # (d)
        if activity.retention.law:
            assert activity.retention.law in body
        if activity.other_sources:                                         # (g)
            assert activity.other_sources.get(language) in body
        if activity.automated.logic:                                       # (h)
            assert activity.automated.logic.get(language) in body
    for article in ("16", "17", "18", "21"):                               # (e)
        assert re.search(rf"(artikkel|Article) {article}\b", body)
    assert "Datatilsynet" in body                                          # (f)
    automated = "avgjørelser" if language == "nb" else "decisions"
    assert automated in body
    for recipient in record.transfers():                                   # 15(2)
        assert recipient.safeguard.get(language) in body
    if not record.transfers():
        assert ("utenfor EØS" in body) if language == "nb" else ("outside the EEA" in body)
    assert ("gratis" in body) if language == "nb" else ("free of charge" in body)   # 15(3)
    assert "2. mars 2026" in body or "2 March 2026" in body
    assert "så snart vi kan" not in body and "as soon as we can" not in body
    assert draft.quoted_sections == () and "\n> " not in draft.body  # no policy pasted
    assert draft.ready


def test_proff_security_access_names_purposes_processors_and_retention(settings, policies):
    body = squash(draft_reply(info(settings, "proffsecurity"), policies["proffsecurity"], REF,
                              ["access"], "nb", DUE, verified=True).body)
    for needle in ("å installere alarmen", "direkte markedsføring", "Mailchimp", "Phonero",
                   "Microsoft 365", "Proff regnskap AS", "Braathe Gruppen",
                   "fem år etter utgangen av regnskapsåret (bokføringsloven § 13)",
                   "EU-US Data Privacy Framework", "Profilering"):
        assert needle in body, needle


@pytest.mark.parametrize("org", ORGS)
def test_english_replies_carry_no_norwegian_policy_text(settings, policies, org):
    sentences = norwegian_sentences(policies[org])
    for intents, question in ((["access"], None), (["erasure"], None), (["portability"], None),
                              (["opt_out"], None), (["objection", "restriction"], None),
                              (["question"], "How long do you keep my data?"),
                              (["question"], "Who do you share my data with?")):
        body = squash(draft_reply(info(settings, org), policies[org], REF, intents, "en",
                                  DUE, question=question).body)
        assert not [s for s in sentences if s in body], (org, intents)
        assert "personvernforordningen" not in body


def test_access_can_be_limited_to_the_activities_that_concern_the_person(settings, policies):
    draft = draft_reply(info(settings, "bagges"), policies["bagges"], REF, ["access"], "en",
                        DUE, access_activities=["cctv"], requester_name="Kari Nordmann")
    assert "Camera surveillance" in draft.body and "Phone log" not in draft.body
    assert draft.body.startswith("Dear Kari Nordmann,")


# --------------------------------------------------------------------------- erasure


def test_branninfo_erasure_with_visma_kept_says_what_is_kept_until_when_and_why(
        settings, policies):
    checklist = {"TMG": "done", "CRM": "done",
                 "Visma": ("kept", "bokføringsloven § 13", date(2031, 12, 31))}
    for language, until in (("nb", "31. desember 2031"), ("en", "31 December 2031")):
        draft = draft_reply(info(settings, "branninfo"), policies["branninfo"], REF, ["erasure"],
                            language, DUE, erasure_checklist=checklist, verified=True)
        assert draft.ready
        paragraphs = draft.body.split("\n\n")
        deleted = next(p for p in paragraphs if "slettet opplysningene" in p
                       or "erased the data" in p)
        assert "TMG" in deleted and "CRM" in deleted and "Visma" not in deleted
        kept = next(p for p in paragraphs if p.startswith(("I Visma", "In Visma")))
        assert "bokføringsloven § 13" in kept and until in kept
        assert ("sperret" in kept) if language == "nb" else ("restricted" in kept)
        assert ("17 nr. 3 bokstav b" in kept) or ("17(3)(b)" in kept)
        assert "Telemagic Group A/S (TMG)" in draft.body  # told (Art. 19)
        assert "19" in draft.body
        assert "produktansvar" not in draft.body.lower()
        assert "forbrukerkjøp" not in draft.body.lower()


def test_no_erasure_reply_names_produktansvarsloven_as_a_duty(settings, policies):
    checklist = [Settled("TMG", "done"), Settled("CRM", "kept", "produktansvarsloven"),
                 Settled("Visma", "kept", "forbrukerkjøpsloven § 27")]
    for language in ("nb", "en"):
        draft = draft_reply(info(settings, "branninfo"), policies["branninfo"], REF, ["erasure"],
                            language, DUE, erasure_checklist=checklist)
        body = draft.body.lower()
        assert "produktansvar" not in body and "forbrukerkjøp" not in body
        assert ("rettskrav" in body) or ("legal claims" in body)  # Art. 17(3)(e) instead


def test_marketing_systems_are_suppressed_and_the_suppression_is_kept(settings, policies):
    checklist = {"SuperOffice": "done", "Microsoft 365": "done", "Phonero": "done",
                 "Mailchimp": "suppressed",
                 "Visma": ("kept", "bokføringsloven § 13", date(2031, 12, 31))}
    draft = draft_reply(info(settings, "proffsecurity"), policies["proffsecurity"], REF,
                        ["erasure"], "nb", DUE, erasure_checklist=checklist)
    suppressed = next(p for p in draft.body.split("\n\n") if p.startswith("I Mailchimp"))
    assert "sperret deg mot markedsføring" in suppressed and "ikke slettet" in suppressed
    deleted = next(p for p in draft.body.split("\n\n") if "slettet opplysningene" in p)
    assert "Mailchimp" not in deleted and "Visma" not in deleted


def test_an_erasure_not_settled_everywhere_is_not_ready_and_says_what_is_open(settings, policies):
    draft = draft_reply(info(settings, "branninfo"), policies["branninfo"], REF,
                        ["access", "erasure"], "nb", DUE,
                        erasure_checklist={"TMG": "done", "CRM": "pending"})
    assert not draft.ready
    assert "ikke avklart i Visma og CRM" in draft.body or "ikke avklart i CRM og Visma" in draft.body
    assert "Vi har slettet" not in draft.body


# --------------------------------------------------------------------------- questions

QUESTIONS = {
    "branninfo": ["Hvor lenge lagrer dere telefonopptak?", "Hvem deler dere opplysningene med?",
                  "Hvor lagres dataene mine?", "Hva koster en brannslukker?"],
    "infracomfort": ["Hva er informasjonskapsler brukt til?", "Hvor lenge lagrer dere ordre?",
                     "Kan dere slette meg fra supportsystemet?"],
    "plania": ["Lagres dataene i USA?", "Hvor lenge oppbevarer dere fakturaer?"],
    "proffsecurity": ["Hvor lenge lagrer dere alarmopptak?", "Selger dere opplysningene mine?",
                      "Hva brukes GPS-posisjonen til?"],
    "bagges": ["Hvor lenge lagres kameraopptak?", "Hvor lenge oppbevarer dere ordre?",
               "Hva koster en ny tenningsplugg?"],
}


@pytest.mark.parametrize("org", ORGS)
def test_questions_are_short_and_never_quote_a_flagged_passage(settings, policies, records, org):
    flagged = set(flagged_sections(policies[org], records[org]))
    for question in QUESTIONS[org]:
        draft = draft_reply(info(settings, org), policies[org], REF, ["question"], "nb", DUE,
                            question=question)
        assert len(draft.body.split()) < 250, (org, question)
        assert len(draft.quoted_sections) <= 1
        assert not set(draft.quoted_sections) & flagged, (org, question)
        for block in re.findall(r"^«.+»\n((?:>.*\n?)+)", draft.body, re.MULTILINE):
            assert len(block.replace(">", " ").split()) <= 62


def test_a_retention_question_is_answered_from_the_record_not_the_flagged_section(
        settings, policies):
    draft = draft_reply(info(settings, "bagges"), policies["bagges"], REF, ["question"], "nb",
                        DUE, question="Hvor lenge oppbevarer dere ordre?")
    assert "15 år" in draft.body.split("\n\n")[2]
    assert "ordrebehandling-og-arkiv" not in draft.quoted_sections  # names regnskapsloven


def test_a_question_nobody_answers_says_so_and_quotes_nothing(settings, policies):
    draft = draft_reply(info(settings, "branninfo"), policies["branninfo"], REF, ["question"],
                        "en", DUE, question="What does a fire extinguisher cost?")
    assert draft.quoted_sections == () and "\n> " not in draft.body
    assert "[[FOR STAFF" in draft.body and not draft.ready
    assert len(draft.body.split()) < 250


def test_every_intent_never_quotes_a_flagged_section(settings, policies, records):
    for org in ORGS:
        flagged = set(flagged_sections(policies[org], records[org]))
        for intent in ("access", "erasure", "portability", "opt_out", "rectification",
                       "restriction", "objection"):
            draft = draft_reply(info(settings, org), policies[org], REF, [intent], "nb", DUE)
            assert not set(draft.quoted_sections) & flagged, (org, intent)


# --------------------------------------------------------------------------- dsr policies check


def test_policies_check_lists_the_stale_passages_of_the_seed_policies():
    result = CliRunner().invoke(cli, ["policies", "check"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    expected = [
        ("branninfo.md:34:", "regnskapsloven"), ("branninfo.md:48:", "produktansvarsloven"),
        ("branninfo.md:48:", "forbrukerkjøpsloven"),
        ("infracomfort.md:21:", "§ 18/§ 19"), ("infracomfort.md:67:", "ekomloven § 2-7b"),
        ("infracomfort.md:69:", "dead link"), ("infracomfort.md:81:", "§ 18/§ 19"),
        ("infracomfort.md:81:", "pointing to the policy"), ("infracomfort.md:81:", "30 days"),
        ("infracomfort.md:56:", "cannot be erased"), ("infracomfort.md:90:", "dead link"),
        ("plania.md:88:", "USA without a safeguard"),
        ("plania.md:90:", "Privacy Shield"), ("plania.md:90:", "dead link"),
        ("proffsecurity.md:177:", "USA without a safeguard"),
        ("bagges.md:22:", "§ 18/§ 19"), ("bagges.md:42:", "ekomloven § 2-7b"),
        ("bagges.md:61:", "regnskapsloven"), ("bagges.md:106:", "§ 18/§ 19"),
    ]
    lines = out.splitlines()
    for where, what in expected:
        assert any(where in line and what in line for line in lines), (where, what)
    for line in lines:
        assert re.match(r"^/.+\.md:\d+: .+ \(.+\)$", line), line
    assert "Data Privacy Framework" in out and "bokføringsloven § 13" in out


def test_policies_check_one_org_and_an_unknown_org():
    result = CliRunner().invoke(cli, ["policies", "check", "plania"])
    assert result.exit_code == 0
    assert all("plania.md:" in line for line in result.stdout.splitlines())
    unknown = CliRunner().invoke(cli, ["policies", "check", "nope"])
    assert unknown.exit_code == 2 and "unknown organisation" in unknown.stderr


def test_a_retention_period_that_contradicts_the_record_is_flagged(policies, records, tmp_path):
    record = records["branninfo"]
    calls = record.activity("calls")
    changed = dataclasses.replace(record, activities=tuple(
        dataclasses.replace(a, retention=dataclasses.replace(a.retention, period="P4W"))
        if a is calls else a for a in record.activities))
    findings = check_policy_file(SHIPPED / "branninfo.md", policies["branninfo"], changed)
    contradiction = [f for f in findings if f.rule == "record"]
    assert len(contradiction) == 1
    assert contradiction[0].line == 53 and "seks uker" in str(contradiction[0])
    assert "opptak" in flagged_sections(policies["branninfo"], changed)
    # ... and the draft then no longer quotes it
    org = org_info(load_settings(None).organization("branninfo"))
    draft = draft_reply(org, policies["branninfo"], REF, ["question"], "nb", DUE,
                        question="Hvor lenge lagrer dere telefonopptak?", record=changed)
    assert "opptak" not in draft.quoted_sections


def test_the_rules_are_data_an_operator_can_extend(tmp_path, policies):
    rules = tmp_path / "stale_law.toml"
    shutil.copy(SHIPPED / "stale_law.toml", rules)
    with rules.open("a", encoding="utf-8") as f:
        f.write("\n[[rules]]\nid = \"commfides\"\npattern = 'Commfides'\n"
                "what = \"names a certificate vendor\"\nwhy = \"a test rule\"\n")
    loaded = load_rules(rules)
    findings = check_policy_file(SHIPPED / "infracomfort.md", policies["infracomfort"], None,
                                 loaded)
    assert any(f.rule == "commfides" and f.line == 74 for f in findings)

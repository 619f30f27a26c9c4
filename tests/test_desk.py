"""The review desk in the CLI, read as a privacy officer reads it: `drafts show` gives the whole
draft and the checklist; an edit keeps what dsr wrote; a reopened case can be redrafted and a
case that cannot have a reply cannot; a rejection drafts a refusal letter with the reason and
both routes (Art. 12(4)); rectification, objection and restriction replies carry what the law
asks; nynorsk requesters get nynorsk, English requesters no Norwegian.

These tests check content, not wording: the names of authorities, articles, record entries and
words that only one language has.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from stdnum.no import fodselsnummer

from assistant.cli import cli
from assistant.config import load_settings
from assistant.drafting import draft_refusal, draft_reply
from assistant.understand.policies import load_policies
from assistant.understand.records import find_record
from assistant.workflow import org_info

REF = "DSR-2026-0042"
DUE = date(2026, 3, 2)


def make_fnr(birth: str) -> str:
    """A synthetic fødselsnummer that passes stdnum's checks (as in test_logs)."""
    for individual in range(100, 500):
        first9 = f"{birth}{individual:03d}"
        k1 = fodselsnummer.calc_check_digit1(first9)
        if len(k1) != 1:
            continue
        k2 = fodselsnummer.calc_check_digit2(first9 + k1)
        if len(k2) == 1 and fodselsnummer.is_valid(first9 + k1 + k2):
            return first9 + k1 + k2
    raise AssertionError("no valid number for this date")


FNR = make_fnr("150385")

# Words that only nynorsk (not bokmål) writes this way.
NYNORSK = ("ikkje", "personopplysningar", "førespurnaden", "kva", "gjere", "frå", "seinast")
# Words any Norwegian reply has and no English one should.
NORWEGIAN = re.compile(r"\b(ikke|ikkje|personopplysninger|forespørsel|vi har|og|til|du|deg|"
                       r"behandling|behandlinga|personvernforordningen|artikkel)\b", re.I)


class Desk:
    def __init__(self, tmp_path):
        self.env = {"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/dsr.db"}
        self.runner = CliRunner()
        self.tmp = tmp_path

    def __call__(self, *args: str, expect: int = 0) -> str:
        result = self.runner.invoke(cli, list(args), env=self.env)
        assert result.exit_code == expect, (args, result.output, result.exception)
        return result.output

    def case(self, ref: str) -> dict:
        return json.loads(self("cases", "show", ref, "--json"))

    def pending(self, ref: str) -> list[dict]:
        return [d for d in self.case(ref)["drafts"] if d["state"] == "pending"]

    def open(self, org: str, *intents: str, verify: bool = True, text: str | None = None,
             name: str | None = None) -> str:
        args = ["cases", "new", "--org", org, "--requester", "kari@example.no", "--by", "ola",
                "--json"]
        args += [a for i in intents for a in ("--intent", i)]
        if text:
            args += ["--text", text]
        if name:
            args += ["--name", name]
        ref = json.loads(self(*args))["ref"]
        if verify:
            self("cases", "verify", ref, "--method", "known_channel", "--by", "ola")
        return ref


@pytest.fixture
def dsr(tmp_path):
    return Desk(tmp_path)


@pytest.fixture(scope="module")
def settings():
    return load_settings(None)


@pytest.fixture(scope="module")
def policies():
    return load_policies(Path(__file__).resolve().parent.parent / "policies")


def squash(text: str) -> str:
    return " ".join(text.split())


def record_texts(org: str) -> list[str]:
    """The bokmål texts of an organisation's record (records have nb and en only, so a
    nynorsk reply shows them in bokmål), longest first."""
    record = find_record(org)
    out: list[str] = []
    for a in record.activities:
        texts = [a.name, a.purpose, a.legal_basis.text, a.retention.text, a.retention.why,
                 a.other_sources, a.automated.logic]
        texts += [t for r in a.recipients for t in (r.what, r.location, r.safeguard)]
        out += [t.nb for t in texts if t is not None] + list(a.categories.nb)
    if record.copy_route:
        out.append(record.copy_route.nb)
    return sorted({squash(t) for t in out if t}, key=len, reverse=True)


def own_words(body: str, org: str) -> str:
    """A reply without what it shows verbatim: policy quotes and the record's bokmål texts."""
    text = squash("\n".join(line for line in body.splitlines() if not line.startswith(">")))
    for piece in record_texts(org):
        text = text.replace(piece, " ").replace(piece[:1].lower() + piece[1:], " ")
    return text


# --------------------------------------------------------------------------- drafts show


def test_drafts_show_prints_the_whole_body_and_the_erasure_checklist(dsr):
    ref = dsr.open("branninfo", "erasure")
    dsr("cases", "erasure", ref, "--system", "Visma", "--kept", "--law", "bokføringsloven § 13",
        "--until", "2031-12-31", "--by", "ola")
    out = dsr("drafts", "show", ref)
    body = dsr.pending(ref)[-1]["body"]
    assert squash(body) in squash(out)  # the full body, not a preview
    assert dsr.pending(ref)[-1]["subject"] in out
    checklist = out.split("Erasure checklist:", 1)[1]
    rows = {line.split()[0]: line for line in checklist.splitlines()[3:] if line.strip()}
    assert {"TMG", "Visma", "CRM"} <= set(rows)
    assert "kept" in rows["Visma"] and "13" in rows["Visma"] and "2031-12-31" in rows["Visma"]
    assert "pending" in rows["TMG"]
    # the draft still holds a line for staff (TMG and CRM are unsettled), and says so
    assert re.search(r"Line for staff: yes", out)


def test_drafts_show_json_marks_quoted_sections_and_staff_lines(dsr):
    ref = dsr.open("proffsecurity", "objection")
    view = json.loads(dsr("drafts", "show", ref, "--json"))
    assert view["pending"] and view["case"]["ref"] == ref
    draft = view["drafts"][0]
    assert draft["kind"] == "objection" and draft["body"].strip()
    assert draft["sections"], "the objection reply quotes the rights section"
    assert all(set(s) >= {"id", "heading", "flagged", "findings"} for s in draft["sections"])
    assert not any(s["flagged"] for s in draft["sections"])  # never a flagged section
    assert draft["staff_lines"] == [] and draft["ready"]


def test_drafts_show_names_a_flagged_quote(dsr, monkeypatch):
    """A draft should never quote a flagged section; if one does (quoted before the rule was
    added, say), the desk says so."""
    ref = dsr.open("proffsecurity", "objection")
    from assistant import desk

    real = desk.flagged_sections
    quoted = dsr.pending(ref)[-1]["quoted_sections"]

    def flag_everything(policy, record=None):
        found = dict(real(policy, record))
        from assistant.understand.policy_check import Finding
        for sid in quoted:
            found[sid] = [Finding(None, 0, sid, "test", "stale law", "a test rule")]
        return found

    monkeypatch.setattr(desk, "flagged_sections", flag_everything)
    out = dsr("drafts", "show", ref)
    assert "FLAGGED" in out and "stale law" in out and "WARNING" in out


def test_drafts_show_of_an_unknown_case_is_refused(dsr):
    dsr("drafts", "show", "DSR-2026-9999", expect=1)


# --------------------------------------------------------------------------- edits


def test_an_edit_keeps_the_generated_text_as_the_earlier_version(dsr):
    ref = dsr.open("bagges", "objection")
    generated = dsr.pending(ref)[-1]["body"]
    edited = dsr.tmp / "edited.txt"
    edited.write_text("Hei,\n\nVi har stanset behandlingen.\n\nHilsen BAGGES AS\n", encoding="utf-8")
    dsr("drafts", "approve", ref, "--by", "kari", "--edit-file", str(edited))
    draft = [d for d in dsr.case(ref)["drafts"] if d["state"] == "approved"][0]
    assert draft["body"] == edited.read_text(encoding="utf-8")
    assert draft["edited"] is True
    assert [v["version"] for v in draft["versions"]] == [1, 2]
    assert draft["versions"][0]["body"] == generated and draft["versions"][0]["by"] == "dsr"
    assert draft["versions"][1]["by"] == "kari"
    out = dsr("drafts", "show", ref)
    assert "Edited by kari" in out and squash(generated) in squash(out)


def test_an_unedited_draft_has_one_version(dsr):
    ref = dsr.open("bagges", "objection")
    dsr("drafts", "approve", ref, "--by", "kari")
    draft = [d for d in dsr.case(ref)["drafts"] if d["state"] == "approved"][0]
    assert draft["edited"] is False and len(draft["versions"]) == 1


# --------------------------------------------------------------------------- redraft


def test_a_reopened_case_is_redrafted_and_the_old_draft_is_kept(dsr):
    ref = dsr.open("bagges", "objection")
    dsr("cases", "close", ref, "--by", "ola")
    dsr("drafts", "redraft", ref, "--by", "ola", expect=1)  # closed: reopen first
    dsr("cases", "reopen", ref, "--by", "ola")
    assert dsr.case(ref)["state"] == "verified"
    dsr("drafts", "redraft", ref, "--by", "ola")
    case = dsr.case(ref)
    assert case["state"] == "drafted"
    assert [d["state"] for d in case["drafts"]] == ["superseded", "pending"]
    # redrafting a drafted case (after a policy edit) supersedes the pending reply
    dsr("drafts", "redraft", ref, "--by", "ola")
    assert [d["state"] for d in dsr.case(ref)["drafts"]] == ["superseded"] * 2 + ["pending"]
    assert "superseded" in dsr("drafts", "show", ref)


def test_redraft_is_refused_where_a_case_cannot_have_a_reply(dsr):
    waiting = dsr.open("bagges", "access", verify=False)
    out = dsr("drafts", "redraft", waiting, "--by", "ola", expect=1)
    assert "verif" in out
    approved = dsr.open("bagges", "objection")
    dsr("drafts", "approve", approved, "--by", "ola")
    dsr("drafts", "redraft", approved, "--by", "ola", expect=1)
    rejected = dsr.open("bagges", "objection")
    dsr("drafts", "reject", rejected, "--reason", "Ikke en forespørsel om personvern",
        "--by", "ola")
    dsr("drafts", "redraft", rejected, "--by", "ola", expect=1)
    dsr("drafts", "redraft", "DSR-2026-9999", "--by", "ola", expect=1)


# --------------------------------------------------------------------------- refusal


def test_a_rejection_drafts_a_refusal_letter_with_the_reason_and_both_routes(dsr):
    ref = dsr.open("proffsecurity", "access", name="Kari Nordmann")
    reason = f"Vi har ingen opplysninger om deg (oppgitt fødselsnummer {FNR})."
    dsr("drafts", "reject", ref, "--reason", reason, "--by", "ola")
    case = dsr.case(ref)
    assert case["state"] == "rejected"
    letters = [d for d in case["drafts"] if d["kind"] == "refusal"]
    assert len(letters) == 1 and letters[0]["state"] == "pending"
    body = letters[0]["body"]
    assert "Datatilsynet" in body and "domstol" in body.lower()
    assert "77" in body and "79" in body and "12 nr. 4" in body
    assert "Vi har ingen opplysninger om deg" in body
    assert FNR not in json.dumps(case) and "[fødselsnummer]" in body
    assert "innsyn" in body  # says which request is refused
    # staff review it like the extension notice: approving does not move the case
    dsr("drafts", "approve", ref, "--by", "kari")
    case = dsr.case(ref)
    assert case["state"] == "rejected"
    assert [d["state"] for d in case["drafts"] if d["kind"] == "refusal"] == ["approved"]
    assert "notice_approved" in {e["kind"] for e in case["events"]}


def test_reopening_a_rejected_case_withdraws_its_pending_refusal(dsr):
    ref = dsr.open("bagges", "objection")
    dsr("drafts", "reject", ref, "--reason", "Feil mottaker", "--by", "ola")
    dsr("cases", "reopen", ref, "--by", "ola")
    dsr("drafts", "redraft", ref, "--by", "ola")
    pending = dsr.pending(ref)
    assert [d["kind"] for d in pending] == ["objection"]


@pytest.mark.parametrize("language,court", [("nb", "domstolene"), ("nn", "domstolane"),
                                             ("en", "courts")])
def test_the_refusal_letter_in_every_language(settings, language, court):
    letter = draft_refusal(org_info(settings.organization("bagges")), REF, language,
                           "the reason", ["erasure"], "Kari")
    assert letter.kind == "refusal" and letter.ready
    assert "Datatilsynet" in letter.body and court in letter.body and "the reason" in letter.body
    assert "Art" in letter.body or "artikkel" in letter.body


# --------------------------------------------------------------------------- rectification


def test_rectification_states_what_was_corrected(dsr):
    ref = dsr.open("branninfo", "rectification")
    first = dsr.pending(ref)[-1]
    assert "[[" in first["body"]  # not ready: nothing corrected yet
    dsr("drafts", "approve", ref, "--by", "ola", expect=1)
    dsr("cases", "rectify", ref, "--what", "Adressen er endret fra Nygata 5 til Nygata 15",
        "--by", "ola")
    body = dsr.pending(ref)[-1]["body"]
    assert "Nygata 15" in body and "[[" not in body
    assert "16" in body and "19" in body  # Art. 16 and recipients told (Art. 19)
    assert "rectified" in {e["kind"] for e in dsr.case(ref)["events"]}
    dsr("drafts", "approve", ref, "--by", "ola")


def test_rectify_is_refused_without_verification_or_without_the_intent(dsr):
    waiting = dsr.open("branninfo", "rectification", verify=False)
    dsr("cases", "rectify", waiting, "--what", "x", "--by", "ola", expect=1)
    other = dsr.open("branninfo", "access")
    dsr("cases", "rectify", other, "--what", "x", "--by", "ola", expect=1)


# --------------------------------------------------------------------------- objection, restriction


@pytest.mark.parametrize("language", ["nb", "en"])
def test_the_objection_reply_names_the_activities_their_basis_and_the_restriction(
        settings, policies, language):
    record = find_record("proffsecurity")
    draft = draft_reply(org_info(settings.organization("proffsecurity")),
                        policies["proffsecurity"], REF, ["objection"], language, DUE,
                        verified=True)
    body = squash(draft.body)
    assert draft.ready
    for activity in record.activities:
        name = activity.name.get(language)
        assert f"{name}: {activity.legal_basis.text.get(language)}" in body, name
        assert activity.legal_basis.cite(language) in body
    # legitimate interest is weighed; restricted meanwhile; marketing stops without weighing
    if language == "nb":
        assert "tvingende berettigede grunner som går foran dine interesser, rettigheter og friheter" in body
        assert "artikkel 18 nr. 1 bokstav d" in body and "21 nr. 2 og 3" in body
    else:
        assert "compelling legitimate grounds" in body and "interests, rights and freedoms" in body
        assert "Article 18(1)(d)" in body and "Article 21(2) and (3)" in body
    marketing = record.activity("marketing").name.get(language)
    weighed, _, rest = body.partition(marketing + ":")
    assert rest, "the marketing activity is named"
    assert "bokstav f" in weighed or "6(1)(f)" in weighed


def test_the_restriction_reply_explains_restriction_and_names_the_grounds(settings, policies):
    for language, stored in (("nb", "lagrer opplysningene"), ("en", "store the data"),
                             ("nn", "lagrar opplysningane")):
        body = squash(draft_reply(org_info(settings.organization("branninfo")),
                                  policies["branninfo"], REF, ["restriction"], language,
                                  DUE).body)
        assert stored in body
        for point in ("a", "b", "c", "d"):
            assert (f"bokstav {point}" in body) or (f"point ({point})" in body), (language, point)
        assert "18" in body and "19" in body


# --------------------------------------------------------------------------- languages


def test_a_nynorsk_request_gets_a_nynorsk_reply(dsr):
    text = ("Hei, eg vil protestere mot at de brukar personopplysningane mine til "
            "marknadsføring og profilering. Eg ønskjer ikkje at de behandlar opplysningane "
            "mine på dette viset.")
    ref = dsr.open("proffsecurity", text=text, name="Eldbjørg Rise")
    case = dsr.case(ref)
    assert case["language"] == "nn"
    draft = dsr.pending(ref)[-1]
    assert draft["language"] == "nn"
    words = set(re.findall(r"\w+", (draft["subject"] + " " + own_words(draft["body"],
                                                                         "proffsecurity")).lower()))
    assert len(words & set(NYNORSK)) >= 4, words & set(NYNORSK)
    assert not words & {"ikke", "personopplysninger", "forespørselen", "hva", "gjøre"}
    assert "personvernforordninga" in draft["body"]


@pytest.mark.parametrize("intents", [["access"], ["erasure"], ["rectification"],
                                     ["restriction"], ["objection"], ["opt_out"],
                                     ["portability"], []])
def test_nynorsk_templates_answer_every_kind(settings, policies, intents):
    body = own_words(draft_reply(org_info(settings.organization("branninfo")),
                                 policies["branninfo"], REF, intents, "nn", DUE).body,
                     "branninfo").lower()
    assert "ikkje" in body or "frå" in body
    assert not re.search(r"\b(ikke|hva|personopplysninger|forespørsel)\b", body)


@pytest.mark.parametrize("language", ["sv", "da"])
def test_swedish_and_danish_still_get_bokmaal(settings, policies, language):
    draft = draft_reply(org_info(settings.organization("branninfo")), policies["branninfo"], REF,
                        ["restriction"], language, DUE)
    assert draft.language == "nb"


@pytest.mark.parametrize("intents", [["rectification"], ["objection"], ["restriction"]])
@pytest.mark.parametrize("org", ["branninfo", "proffsecurity", "bagges"])
def test_english_replies_have_no_norwegian(settings, policies, org, intents):
    draft = draft_reply(org_info(settings.organization(org)), policies[org], REF, intents,
                        "en", DUE, corrected=["your postal address"])
    letter = draft_refusal(org_info(settings.organization(org)), REF, "en", "No data held.",
                           intents)
    for body in (draft.body, letter.body):
        text = re.sub(r"«[^»]*»|Datatilsynet|www\.\S+", "", body)
        hits = NORWEGIAN.findall(text)
        assert not hits, (org, intents, hits)

"""What discloses nothing is acted on at once: an opt-out (Art. 21(3)), beside a request that
waits for ID too, and questions or unclear messages. What discloses data waits for ID and, for
access, for the copy to be collected (Art. 15(3))."""

from __future__ import annotations

import json

from click.testing import CliRunner

from assistant.cli import cli


class Desk:
    def __init__(self, tmp_path):
        self.env = {"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/dsr.db"}

    def __call__(self, *args: str, expect: int = 0) -> str:
        result = CliRunner().invoke(cli, list(args), env=self.env)
        assert result.exit_code == expect, (args, result.output, result.exception)
        return result.output

    def case(self, ref: str) -> dict:
        return json.loads(self("cases", "show", ref, "--json"))

    def new(self, org: str, *args: str) -> str:
        return json.loads(self("cases", "new", "--org", org, "--requester", "kari@example.no",
                               "--by", "ola", "--json", *args))["ref"]


def pending(case: dict) -> list[dict]:
    return [d for d in case["drafts"] if d["state"] == "pending"]


def test_an_opt_out_beside_an_erasure_is_confirmed_before_verification(tmp_path):
    dsr = Desk(tmp_path)
    ref = dsr.new("proffsecurity", "--intent", "erasure", "--intent", "opt_out")
    case = dsr.case(ref)
    assert case["state"] == "awaiting_verification" and not case["verified"]
    (confirmation,) = pending(case)
    assert confirmation["kind"] == "opt_out"
    assert "[[" in confirmation["body"], "it says nothing was stopped before staff stop it"
    assert [i["system"] for i in case["checklists"]["suppression"]] == ["Mailchimp"]
    dsr("drafts", "approve", ref, "--by", "ola", expect=1)

    dsr("cases", "suppress", ref, "--system", "Mailchimp", "--by", "ola")
    (confirmation,) = pending(dsr.case(ref))
    assert "[[" not in confirmation["body"] and "Mailchimp" in confirmation["body"]
    dsr("drafts", "approve", ref, "--by", "ola")
    case = dsr.case(ref)
    assert case["state"] == "awaiting_verification", "the erasure still waits for ID"
    assert "marketing_stopped" in {e["kind"] for e in case["events"]}
    assert "notice_approved" in {e["kind"] for e in case["events"]}


def test_a_policy_question_is_answered_before_any_verification(tmp_path):
    dsr = Desk(tmp_path)
    ref = dsr.new("branninfo", "--text", "Hvor lenge lagrer dere telefonopptak?")
    case = dsr.case(ref)
    assert case["intents"] == ["question"]
    assert case["verification_method"] == "not_required" and case["state"] == "drafted"
    (reply,) = pending(case)
    assert "seks uker" in reply["body"]
    dsr("drafts", "approve", ref, "--by", "ola")
    assert dsr.case(ref)["state"] == "approved"


def test_an_unclear_message_is_answered_with_a_question_before_any_verification(tmp_path):
    dsr = Desk(tmp_path)
    ref = dsr.new("bagges", "--text", "Hei, jeg lurer på noe angående dere.")
    case = dsr.case(ref)
    assert case["intents"] == [] and case["state"] == "drafted"
    assert [d["kind"] for d in pending(case)] == ["unclear"]


def test_access_is_approved_only_when_every_system_was_searched(tmp_path):
    dsr = Desk(tmp_path)
    ref = dsr.new("branninfo", "--intent", "access")
    dsr("cases", "verify", ref, "--method", "known_channel", "--by", "ola")
    assert [i["system"] for i in dsr.case(ref)["checklists"]["access"]] == ["TMG", "Visma", "CRM"]
    refused = dsr("drafts", "approve", ref, "--by", "ola", expect=1)
    assert "TMG" in refused
    dsr("cases", "collect", ref, "--system", "TMG", "--by", "ola")
    dsr("cases", "collect", ref, "--system", "visma", "--none", "--by", "ola")
    dsr("cases", "collect", ref, "--system", "Nope", "--by", "ola", expect=1)
    dsr("drafts", "approve", ref, "--by", "ola", expect=1)
    dsr("cases", "collect", ref, "--system", "CRM", "--by", "ola")
    dsr("drafts", "approve", ref, "--by", "ola")
    states = {i["system"]: i["state"] for i in dsr.case(ref)["checklists"]["access"]}
    assert states == {"TMG": "done", "Visma": "none", "CRM": "done"}

"""An erasure case end to end at the desk: the reply is written from the checklist as staff
settle it, and cannot go out while any system is unsettled."""

from __future__ import annotations

import json

from click.testing import CliRunner

from assistant.cli import cli


class Desk:
    def __init__(self, tmp_path):
        self.env = {"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/dsr.db"}
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0) -> str:
        result = self.runner.invoke(cli, list(args), env=self.env)
        assert result.exit_code == expect, (args, result.output, result.exception)
        return result.output

    def pending_reply(self, ref: str) -> dict:
        case = json.loads(self("cases", "show", ref, "--json"))
        return [d for d in case["drafts"] if d["state"] == "pending"][-1]


def open_verified_erasure(dsr: Desk, org: str, requester: str) -> str:
    ref = json.loads(dsr("cases", "new", "--org", org, "--requester", requester, "--by", "ola",
                         "--intent", "erasure", "--json"))["ref"]
    dsr("cases", "verify", ref, "--method", "known_channel", "--by", "ola")
    return ref


def test_the_reply_is_rewritten_from_the_checklist_and_held_until_it_is_settled(tmp_path):
    dsr = Desk(tmp_path)
    ref = open_verified_erasure(dsr, "branninfo", "kari@example.no")
    assert "[[" in dsr.pending_reply(ref)["body"]
    refused = dsr("drafts", "approve", ref, "--by", "ola", expect=1)
    assert "line for staff" in refused or "settle" in refused

    dsr("cases", "erasure", ref, "--system", "TMG", "--done", "--by", "ola")
    dsr("cases", "erasure", ref, "--system", "Visma", "--kept", "--law", "bokføringsloven § 13",
        "--until", "2031-12-31", "--by", "ola")
    dsr("cases", "erasure", ref, "--system", "CRM", "--done", "--by", "ola")
    body = dsr.pending_reply(ref)["body"]
    assert "[[" not in body
    visma = [line for line in body.splitlines() if "Visma" in line]
    assert visma and any("13" in line for line in visma), body
    assert "2031" in body
    dsr("drafts", "approve", ref, "--by", "ola")


def test_a_kept_system_needs_its_law_and_only_kept_has_an_end_date(tmp_path):
    dsr = Desk(tmp_path)
    ref = open_verified_erasure(dsr, "branninfo", "per@example.no")
    dsr("cases", "erasure", ref, "--system", "Visma", "--kept", "--by", "ola", expect=1)
    dsr("cases", "erasure", ref, "--system", "TMG", "--done", "--until", "2030-01-01",
        "--by", "ola", expect=1)
    dsr("cases", "erasure", ref, "--system", "TMG", "--done", "--until", "someday",
        "--by", "ola", expect=2)


def test_a_marketing_system_is_suppressed_not_deleted(tmp_path):
    dsr = Desk(tmp_path)
    ref = open_verified_erasure(dsr, "proffsecurity", "ola@example.no")
    for system in ("SuperOffice", "Microsoft 365", "Phonero"):
        dsr("cases", "erasure", ref, "--system", system, "--done", "--by", "ola")
    dsr("cases", "erasure", ref, "--system", "Visma", "--kept", "--law", "bokføringsloven § 13",
        "--until", "2031-12-31", "--by", "ola")
    dsr("cases", "erasure", ref, "--system", "Mailchimp", "--suppressed", "--by", "ola")
    case = json.loads(dsr("cases", "show", ref, "--json"))
    states = {t["system"]: t["state"] for t in case["erasure_tasks"]}
    assert states["Mailchimp"] == "suppressed" and states["Visma"] == "kept"
    body = [d for d in case["drafts"] if d["state"] == "pending"][-1]["body"]
    assert "[[" not in body
    mailchimp = [line for line in body.splitlines() if "Mailchimp" in line]
    assert mailchimp, body
    assert "erasure_suppressed" in {e["kind"] for e in case["events"]}


def test_a_closed_case_keeps_its_checklist(tmp_path):
    dsr = Desk(tmp_path)
    ref = open_verified_erasure(dsr, "branninfo", "liv@example.no")
    dsr("cases", "close", ref, "--by", "ola")
    dsr("cases", "erasure", ref, "--system", "TMG", "--done", "--by", "ola", expect=1)

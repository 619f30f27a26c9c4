"""The `dsr` command line as operators script it: JSON shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import cli


@pytest.fixture
def run(settings, tmp_path, monkeypatch):
    """Invoke the CLI in-process against the test database."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


def test_deadline_json_has_the_six_dates():
    result = CliRunner().invoke(cli, ["deadline", "--received", "2026-02-01T10:00:00+01:00", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "received": "2026-02-01", "legal_due": "2026-03-02", "promised_due": "2026-03-03",
        "due": "2026-03-02", "extension_notice_by": "2026-03-02", "extended_due": "2026-05-04",
    }


def test_deadline_uses_the_organisations_promise(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[organizations]]\nid = "fast"\nname = "Fast AS"\naddresses = ["p@fast.no"]\n'
                      "promise_days = 14\n")
    result = CliRunner().invoke(cli, ["deadline", "--received", "2026-06-01", "--org", "fast",
                                      "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["promised_due"] == "2026-06-15"
    assert json.loads(result.stdout)["due"] == "2026-06-15"


def test_cases_flow_through_the_cli(run):
    opened = run("cases", "new", "--org", "branninfo", "--requester", "ola@example.no",
                 "--intent", "access", "--received", "2026-02-01T09:00", "--by", "kari", "--json")
    assert opened.exit_code == 0, opened.output
    ref = json.loads(opened.stdout)["ref"]
    listed = json.loads(run("cases", "list", "--json").stdout)
    assert [c["ref"] for c in listed] == [ref]
    assert listed[0]["due"] == "2026-03-02" and listed[0]["verified"] is False
    assert run("cases", "list", "--json", "--state", "closed").stdout.strip() == "[]"
    assert run("cases", "verify", ref, "--method", "known_channel", "--by", "kari").exit_code == 0
    assert run("cases", "extend", ref, "--reason", "several systems", "--by", "kari",
               "--now", "2026-02-20").exit_code == 0
    assert run("cases", "close", ref, "--by", "kari").exit_code == 0
    shown = json.loads(run("cases", "show", ref, "--json").stdout)
    assert shown["state"] == "closed" and shown["extended"] and shown["due"] == "2026-05-04"
    staff = [e["kind"] for e in shown["events"] if e["actor"] == "kari"]
    assert staff == ["opened", "verification_requested", "checklist", "verified", "extended",
                     "drafted", "closed"]
    # Verification let dsr draft the reply; the extension redrafted it with the new date.
    assert [e["kind"] for e in shown["events"] if e["actor"] == "dsr"] == ["drafted", "drafted"]
    assert [d["kind"] for d in shown["drafts"]] == ["access", "extension", "access"]
    for event in shown["events"]:
        assert set(event) >= {"at", "kind", "actor", "detail"}
    table = run("cases", "list").stdout
    assert ref in table and "closed" in table


def test_refused_actions_exit_1_with_one_line(run):
    ref = json.loads(run("cases", "new", "--org", "bagges", "--requester", "a@b.no", "--intent",
                         "access", "--by", "kari", "--json").stdout)["ref"]
    run("cases", "close", ref, "--by", "kari")
    again = run("cases", "close", ref, "--by", "kari")
    assert again.exit_code == 1
    assert again.stderr.count("\n") == 1 and "already closed" in again.stderr
    unknown = run("cases", "show", "DSR-2026-9999")
    assert unknown.exit_code == 1 and "no case with reference" in unknown.stderr


def test_bad_usage_exits_2(run):
    assert run("cases", "new", "--org", "nope", "--requester", "a@b.no", "--by", "k").exit_code == 2
    assert run("deadline", "--received", "yesterday").exit_code == 2
    assert run("cases", "verify", "X", "--method", "passport_copy", "--by", "k").exit_code == 2


def test_sweep_and_digest_are_built(run):
    """They were "not built yet" stubs; tests/test_scheduler.py tests them on given dates."""
    assert run("sweep", "--now", "2026-04-01").exit_code == 0
    printed = run("digest", "--now", "2026-04-01", "--print")
    assert printed.exit_code == 0 and "not built yet" not in printed.stderr
    assert run("sweep", "--now", "tomorrow").exit_code == 2


def _dsr(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "config", "code", "needle"),
    [
        (["cases", "list"], "[database]\nurl = 5\n", 2, "database.url"),
        (["cases", "list"], "not toml [", 2, "not valid TOML"),
        (["deadline", "--received", "2026-01-01", "--org", "acme"], None, 2, "unknown organisation"),
        (["cases", "show", "DSR-2030-0001"], None, 1, "no case with reference"),
    ],
)
def test_errors_are_one_line_without_traceback_in_a_real_process(tmp_path, args, config, code, needle):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    if config is not None:
        (tmp_path / "dsr.toml").write_text(config)
        env["DSR_CONFIG"] = str(tmp_path / "dsr.toml")
    result = _dsr(*args, cwd=tmp_path, env=env)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_case_is_assigned_listed_by_assignee_and_taken_back(run):
    ref = json.loads(run("cases", "new", "--org", "branninfo", "--requester", "ola@example.no",
                         "--intent", "erasure", "--by", "kari", "--json").stdout)["ref"]
    assert json.loads(run("cases", "show", ref, "--json").stdout)["assignee"] is None
    assert run("cases", "assign", ref, "--to", "UKARI123", "--by", "kari").exit_code == 0
    mine = json.loads(run("cases", "list", "--json", "--assignee", "UKARI123").stdout)
    assert [c["ref"] for c in mine] == [ref] and mine[0]["assignee"] == "UKARI123"
    assert json.loads(run("cases", "list", "--json", "--assignee", "UOTHER").stdout) == []
    assert run("cases", "assign", ref, "--nobody", "--by", "kari").exit_code == 0
    shown = json.loads(run("cases", "show", ref, "--json").stdout)
    assert shown["assignee"] is None
    assert [e["detail"] for e in shown["events"] if e["kind"] == "assigned"] == [
        {"assignee": "UKARI123", "previous": None}, {"assignee": None, "previous": "UKARI123"}]


@pytest.mark.parametrize("args", [["--by", "kari"], ["--to", "Ola", "--nobody", "--by", "kari"],
                                  ["--to", "  ", "--by", "kari"]])
def test_assign_needs_exactly_one_of_to_and_nobody(run, args):
    ref = json.loads(run("cases", "new", "--org", "branninfo", "--requester", "ola@example.no",
                         "--intent", "access", "--by", "kari", "--json").stdout)["ref"]
    result = run("cases", "assign", ref, *args)
    assert result.exit_code == 2


def test_a_closed_case_is_not_assigned(run):
    ref = json.loads(run("cases", "new", "--org", "branninfo", "--requester", "ola@example.no",
                         "--intent", "access", "--by", "kari", "--json").stdout)["ref"]
    assert run("cases", "close", ref, "--by", "kari").exit_code == 0
    result = run("cases", "assign", ref, "--to", "Ola", "--by", "kari")
    assert result.exit_code != 0 and "finished case is not assigned" in result.output

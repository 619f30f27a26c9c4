"""Bad configuration, as operators really write it: one line naming the file, key or variable,
exit code 2, never a traceback. And no command arguments, however odd, end in a traceback."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.cli import cli

DSR = [sys.executable, "-m", "assistant"]


def run_dsr(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a clean folder, as an operator runs it."""
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    environ.update(env or {})
    return subprocess.run(DSR + args, cwd=tmp_path, env=environ, capture_output=True,
                          text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]


def test_a_config_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "dsr.toml"
    path.write_bytes(b'[[organizations]]\nid = "b"\nname = "B\xf8gh AS"\naddresses = ["a@b.no"]\n')
    result = run_dsr(["--config", str(path), "cases", "list"], tmp_path)
    assert_one_line_error(result, "dsr.toml:3", "UTF-8")


def test_a_list_variable_that_is_not_json_names_the_variable(tmp_path):
    result = run_dsr(["cases", "list"], tmp_path, {"DSR_SLACK__APPROVERS": "U1,U2"})
    assert_one_line_error(result, "DSR_SLACK__APPROVERS", "JSON")


def test_a_misspelt_variable_is_refused_not_ignored(tmp_path):
    result = run_dsr(["cases", "list"], tmp_path, {"DSR_DATABSE__URL": "sqlite:///x.db"})
    assert_one_line_error(result, "DSR_DATABSE__URL", "DSR_DATABASE__URL")
    assert not (tmp_path / "dsr.db").exists() and not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("url, words", [
    ("postgres://u@localhost/db", ["database.url", "DSR_DATABASE__URL", "postgres"]),
    ("mysql://u@localhost/db", ["database.url", "mysql"]),
    ("mongodb://localhost", ["database.url", "mongodb"]),
    ("not a url", ["database.url"]),
    ("sqlite:///no/such/folder/dsr.db", ["database.url", "no/such/folder"]),
])
def test_an_unusable_database_url_is_one_line(tmp_path, url, words):
    result = run_dsr(["cases", "list"], tmp_path, {"DSR_DATABASE__URL": url})
    assert_one_line_error(result, *words)
    assert not (tmp_path / "no").exists(), "no folder is created for a mistyped path"


def test_the_same_url_in_a_config_file_names_the_key(tmp_path):
    path = tmp_path / "dsr.toml"
    path.write_text('[database]\nurl = "postgres://u@localhost/db"\n', encoding="utf-8")
    result = run_dsr(["--config", str(path), "cases", "list"], tmp_path)
    assert_one_line_error(result, "database.url")
    assert "DSR_DATABASE__URL" not in result.stderr


def test_a_config_path_that_is_a_device_is_refused_at_once(tmp_path):
    result = run_dsr(["--config", "/dev/zero", "cases", "list"], tmp_path)
    assert_one_line_error(result, "/dev/zero")


def test_a_config_path_that_is_a_folder_is_a_usage_error(tmp_path):
    result = run_dsr(["--config", str(tmp_path), "cases", "list"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is a directory" in result.stderr


def test_plain_postgresql_urls_use_the_shipped_driver():
    from assistant.config import DatabaseSettings

    url = DatabaseSettings(url="postgresql://u@localhost/db").url
    assert url == "postgresql+psycopg://u@localhost/db"


def test_test_harness_variables_are_not_settings(tmp_path):
    result = run_dsr(["deadline", "--received", "2026-02-01"], tmp_path,
                     {"DSR_TEST_POSTGRES_URL": "postgresql+psycopg://x@127.0.0.1/test"})
    assert result.returncode == 0, result.stderr


# -- fuzzing the command line ---------------------------------------------------------------

COMMANDS = [
    ["deadline"], ["classify"], ["cases", "list"], ["cases", "show"], ["cases", "new"],
    ["cases", "verify"], ["cases", "extend"], ["cases", "close"], ["cases", "reopen"],
    ["cases", "erasure"], ["drafts", "list"], ["drafts", "approve"], ["drafts", "reject"],
    ["sweep"], ["digest"],
]
OPTIONS = ["--received", "--org", "--json", "--requester", "--by", "--text", "--intent",
           "--method", "--reason", "--system", "--done", "--kept", "--law", "--now", "--state",
           "--channel", "--subject", "--to", "--explain", "--jsonl", "--name", "--all",
           "--edit-file", "--print"]
ODD_VALUES = st.one_of(
    st.sampled_from(["", "-", "branninfo", "DSR-2026-0001", "dsr-2026-0001", "9999-12-31",
                     "0001-01-01", "2026-02-30", "2026-13-01T25:61", "1e400", "NaN", "@", "a@b",
                     "\x00", "email_code", "access", "phone", "x" * 5000, "../../etc/passwd",
                     "/dev/null", "Visma", "--", "\u202eevil", "12345678901", "01010150139"]),
    st.text(alphabet=string.printable + "æøåÆØÅ\u200b", max_size=40),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS),
       rest=st.lists(st.one_of(st.sampled_from(OPTIONS), ODD_VALUES), max_size=8))
def test_no_arguments_end_in_a_traceback(tmp_path, command, rest):
    runner = CliRunner()
    args = command + [a.replace("\x00", "") for a in rest]
    result = runner.invoke(cli, args, env={"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/fuzz.db"},
                           input="")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"dsr {args!r} raised {result.exception!r}") from result.exception
    assert result.exit_code in (0, 1, 2), (args, result.output)


# -- inputs the probe found that gave tracebacks -----------------------------------------------


@pytest.mark.parametrize("received", ["9999-12-31", "0001-01-01", "0001-01-01T00:00+05:00",
                                      "9999-12-31T23:59+14:00"])
def test_receipt_years_outside_the_calendar_are_a_usage_error(received):
    result = CliRunner().invoke(cli, ["deadline", "--received", received])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "outside" in result.output


@pytest.mark.parametrize("table, words", [
    ('[cases]\nholiday_country = "XX"\n', ["cases", "XX"]),
    ('[cases]\nholiday_country = "NO"\nholiday_subdiv = "ZZ"\n', ["cases", "ZZ"]),
])
def test_a_holiday_calendar_that_does_not_exist_is_refused_at_start(tmp_path, table, words):
    path = tmp_path / "dsr.toml"
    path.write_text(table, encoding="utf-8")
    result = run_dsr(["--config", str(path), "deadline", "--received", "2026-01-05"], tmp_path)
    assert_one_line_error(result, *words)


def test_deeply_nested_json_lines_are_reported_not_crashed():
    lines = "[" * 100_000 + "\n" + '{"id": "ok", "body": "Slett meg"}\n'
    result = CliRunner().invoke(cli, ["classify", "--jsonl"], input=lines)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    out = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert out[0]["error"] == "nested too deeply" and out[1]["id"] == "ok"


def test_an_edit_file_that_is_a_device_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["drafts", "approve", "DSR-2026-0001", "--by", "ola",
                                      "--edit-file", "/dev/zero"],
                                env={"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/dsr.db"})
    assert result.exit_code == 2 and "not a regular file" in result.output


@pytest.mark.parametrize("extra, option", [
    (["--requester", "a" * 300 + "@example.no"], "--requester"),
    (["--requester", "not an address"], "--requester"),
    (["--requester", "a@b.no", "--name", "N" * 201], "--name"),
    (["--requester", "a@b.no", "--text", "slett " * 5000], "--text"),
])
def test_values_too_long_for_the_store_are_refused_without_echoing_them(tmp_path, extra, option):
    args = ["cases", "new", "--org", "branninfo", "--by", "ola"] + extra
    result = CliRunner().invoke(cli, args, env={"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/d.db"})
    assert result.exit_code == 2 and option in result.output
    assert "aaaaaaaaaa" not in result.output and "NNNNNNNNNN" not in result.output


def test_a_too_long_actor_is_refused(tmp_path):
    args = ["cases", "new", "--org", "branninfo", "--by", "x" * 201, "--requester", "a@b.no",
            "--intent", "access"]
    result = CliRunner().invoke(cli, args, env={"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/d.db"})
    assert result.exit_code == 2 and "--by" in result.output


def test_a_one_word_question_of_80_kb_finds_nothing_instead_of_searching_for_minutes():
    from assistant.config import load_settings
    from assistant.understand.policies import load_policy, search

    settings_ = load_settings(None)
    policy = load_policy(settings_.policy_path(settings_.organization("branninfo")))
    assert search(policy, "x" * 80_000) == []
    assert search(policy, "hvor lenge lagrer dere telefonopptak " + "y" * 80_000)


FILE_BYTES = st.one_of(
    st.binary(max_size=400),
    st.text(alphabet=string.printable + "æøå\u202e\u200b\x00[]=\"'{}", max_size=400).map(
        lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xef\xbb\xbf[database]\nurl = 5\n", b"[[organizations]]\n",
                     b"[slack]\napprovers = \"U1\"\n", b"[log]\nlevel = \"LOUD\"\n",
                     b"[cases]\nextra_closed_dates = [\"2026-02-30\"]\n",
                     b"From: x\r\n\r\n" + b"<b>" * 2000, b"\x00" * 300]),
)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=FILE_BYTES, use=st.sampled_from(["config", "edit", "eml"]))
def test_no_file_content_ends_in_a_traceback(tmp_path, content, use):
    path = tmp_path / "input"
    path.write_bytes(content)
    env = {"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/fuzz.db"}
    args = {
        "config": ["--config", str(path), "cases", "list"],
        "edit": ["drafts", "approve", "DSR-2026-0001", "--by", "ola", "--edit-file", str(path)],
        "eml": ["classify", "--eml", str(path), "--json"],
    }[use]
    result = CliRunner().invoke(cli, args, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"dsr {args!r} raised {result.exception!r}") from result.exception
    assert result.exit_code in (0, 1, 2), (args, result.output)

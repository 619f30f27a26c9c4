"""Logs of a privacy product: redacted on the way out, and no personal data put in at the call sites.

The end-to-end test runs a whole erasure case through the CLI at DEBUG, in both formats, with a
requester whose address, name, fødselsnummer and phone number are known, and fails if any of them
reaches the log. It also checks the case reference and the steps DO reach it, so an empty log
cannot pass.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from stdnum.no import fodselsnummer

from assistant.cli import cli
from assistant.config import load_settings
from assistant.logs import (
    EMAIL_MASK,
    FNR_MASK,
    MAX_MESSAGE_CHARS,
    MAX_VALUE_CHARS,
    PHONE_MASK,
    RedactingFormatter,
    StderrHandler,
    redact,
    setup_logging,
)


def make_fnr(birth: str) -> str:
    """A synthetic fødselsnummer that passes stdnum's checks (same recipe as test_pii)."""
    for individual in range(100, 500):
        first9 = f"{birth}{individual:03d}"
        k1 = fodselsnummer.calc_check_digit1(first9)
        if len(k1) != 1:
            continue
        k2 = fodselsnummer.calc_check_digit2(first9 + k1)
        if len(k2) == 1 and fodselsnummer.is_valid(first9 + k1 + k2):
            return first9 + k1 + k2
    raise AssertionError("no valid number for this date")


FNR = make_fnr("150589")
FNR_SPACED = f"{FNR[:6]} {FNR[6:]}"
ADDRESS = "kari.nordmann@nordmann-familie.no"
NAME = "Kari Nordmann"
PHONE = "912 34 567"
BODY_WORDS = "Slett alt om meg"  # what the person wrote: bodies are never logged, even redacted
PHONE_SPELLINGS = ["91234567", "912 34 567", "91 23 45 67", "9123 4567", "912-34-567",
                   "+47 912 34 567", "+4791234567", "0047 91234567", "(+47) 91 23 45 67",
                   "+46 70 123 45 67", "+44 20 7946 0958", "+1 (555) 123-4567"]


@pytest.fixture(autouse=True)
def _restore_dsr_logger() -> Iterator[None]:
    """setup_logging changes the process-wide `dsr` logger; put it back after each test."""
    logger = logging.getLogger("dsr")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"cannot reach {ADDRESS} or {PHONE}, id {FNR_SPACED}")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("dsr.test", logging.INFO, __file__, 1, msg, args or None, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _assert_clean(text: str) -> None:
    for secret in (ADDRESS, FNR, FNR_SPACED, PHONE, "91234567", "nordmann-familie"):
        assert secret not in text, f"{secret!r} leaked into: {text}"


# -- the formatter --------------------------------------------------------------------------------


def test_the_test_number_is_a_valid_fodselsnummer():
    assert fodselsnummer.is_valid(FNR) and len(FNR) == 11


@pytest.mark.parametrize("spelling", PHONE_SPELLINGS)
def test_phone_numbers_in_several_spellings_are_redacted(spelling):
    assert redact(f"ring meg på {spelling} i dag") == f"ring meg på {PHONE_MASK} i dag"


@pytest.mark.parametrize("fnr", [FNR, FNR_SPACED, f"{FNR[:6]}-{FNR[6:]}"])
def test_a_valid_fodselsnummer_is_redacted(fnr):
    assert redact(f"fnr {fnr}.") == f"fnr {FNR_MASK}."


@pytest.mark.parametrize("birth", ["550589", "154589"])  # D-number (day + 40), H-number (month + 40)
def test_d_and_h_numbers_are_redacted(birth):
    number = make_fnr(birth)
    assert redact(f"nr {number}") == f"nr {FNR_MASK}"


def test_email_is_redacted_whole_including_its_domain():
    assert redact(f"from <{ADDRESS}>, cc 'ø.å@æ.no'") == f"from <{EMAIL_MASK}>, cc '{EMAIL_MASK}'"


@pytest.mark.parametrize("harmless", ["DSR-2026-0042", "2026-02-01T10:00:00.123+01:00",
                                      "org 923456789", "ordre 12345678901", "draft 12 of case 3",
                                      "took 0.001234567 s", "port 8025", "sqlite:///tmp/dsr.db"])
def test_what_operators_need_is_kept(harmless):
    assert redact(harmless) == harmless


def test_text_format_redacts_message_args_extra_and_traceback():
    record = _record(f"request from {ADDRESS}: %s (%d chars)", f"ring {PHONE}", 42, exc=True,
                     ref="DSR-2026-0001", note=f"fnr {FNR}", items=[ADDRESS, 7])
    line = RedactingFormatter().format(record)
    _assert_clean(line)
    assert f"request from {EMAIL_MASK}: ring {PHONE_MASK} (42 chars)" in line
    assert "ref=DSR-2026-0001" in line and f"note=\"fnr {FNR_MASK}\"" in line
    assert "Traceback (most recent call last)" in line
    assert f"ValueError: cannot reach {EMAIL_MASK} or {PHONE_MASK}, id {FNR_MASK}" in line


def test_dict_args_are_redacted():
    record = _record("call %(who)s on %(phone)s", {"who": ADDRESS, "phone": PHONE})
    assert RedactingFormatter().format(record).endswith(f"call {EMAIL_MASK} on {PHONE_MASK}")


def test_json_format_is_one_object_per_line_with_extra_redacted():
    record = _record("settled %s", FNR_SPACED, exc=True, ref="DSR-2026-0001",
                     detail={"to": ADDRESS, "phones": [PHONE, "+4791234567"]})
    line = RedactingFormatter(as_json=True).format(record)
    assert "\n" not in line
    data = json.loads(line)
    _assert_clean(line)
    assert data["message"] == f"settled {FNR_MASK}" and data["ref"] == "DSR-2026-0001"
    assert data["detail"] == {"to": EMAIL_MASK, "phones": [PHONE_MASK, PHONE_MASK]}
    assert data["level"] == "INFO" and data["logger"] == "dsr.test"
    assert f"cannot reach {EMAIL_MASK}" in data["exception"]


def test_stack_info_is_redacted():
    record = _record("here")
    record.stack_info = f'Stack (most recent call last):\n  File "x.py", line 1, in f\n    g("{ADDRESS}")'
    _assert_clean(RedactingFormatter().format(record))


def test_long_values_are_cut():
    body = "Hei, jeg vil ha slettet alt. " * 100
    record = _record("text %s", body, extra_body=body)
    line = RedactingFormatter(as_json=True).format(record)
    data = json.loads(line)
    assert len(data["message"]) < MAX_VALUE_CHARS + 60 and "more chars cut" in data["message"]
    assert len(data["extra_body"]) < MAX_VALUE_CHARS + 40
    huge = RedactingFormatter().format(_record(body * 2))
    assert len(huge) < MAX_MESSAGE_CHARS + 120


def test_an_address_at_the_cut_is_still_redacted():
    text = "x" * (MAX_VALUE_CHARS - 5) + " " + ADDRESS
    line = RedactingFormatter().format(_record("%s", text))
    assert "kari.nor" not in line and "kari" not in line


def test_setup_logging_is_idempotent_and_goes_to_stderr(monkeypatch, capsys):
    monkeypatch.setenv("DSR_LOG__LEVEL", "DEBUG")
    monkeypatch.setenv("DSR_LOG__FORMAT", "json")
    settings = load_settings(None)
    assert (settings.log.level, settings.log.format) == ("DEBUG", "json")
    setup_logging(settings)
    logger = setup_logging(settings)
    assert sum(isinstance(h, StderrHandler) for h in logger.handlers) == 1
    assert logger.propagate is False
    logging.getLogger("dsr.cases").debug("case %s moved to %s", "DSR-2026-0001", ADDRESS)
    out, err = capsys.readouterr()
    assert out == ""
    assert json.loads(err)["message"] == f"case DSR-2026-0001 moved to {EMAIL_MASK}"


def test_default_level_keeps_one_shot_commands_quiet():
    settings = load_settings(None)
    assert (settings.log.level, settings.log.format) == ("WARNING", "text")


# -- the whole case through the CLI ---------------------------------------------------------------


def _log_lines(stderr: str) -> list[str]:
    """What stderr holds besides the CLI's own one-line answers (`dsr: refused: …`)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("dsr: ")]


def _run_whole_case(tmp_path: Path, log_format: str) -> tuple[list[str], str]:
    """Open, show, verify, settle, approve, close one erasure case, plus refused actions; return
    the log lines and the case reference."""
    env = {"DSR_DATABASE__URL": f"sqlite:///{tmp_path / 'dsr.db'}", "DSR_LOG__LEVEL": "DEBUG",
           "DSR_LOG__FORMAT": log_format}
    runner = CliRunner()
    logged: list[str] = []

    def dsr(*args: str, code: int = 0):
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        logged.extend(_log_lines(result.stderr))
        return result

    opened = dsr("cases", "new", "--org", "branninfo", "--requester", ADDRESS, "--name", NAME,
                 "--by", "ola", "--json",
                 "--text", f"{BODY_WORDS}, fødselsnummer {FNR_SPACED}, ring meg på {PHONE}")
    ref = json.loads(opened.stdout)["ref"]
    assert ADDRESS in dsr("cases", "show", ref).stdout  # staff see the person; the log does not
    dsr("cases", "show", ref, "--json")
    # Refused actions, some echoing personal data staff typed in the wrong place.
    dsr("drafts", "approve", ref, "--by", "ola", code=1)
    dsr("cases", "show", ADDRESS, code=1)
    dsr("cases", "show", PHONE, code=1)
    dsr("cases", "erasure", ref, "--system", FNR_SPACED, "--done", "--by", "ola", code=1)
    dsr("cases", "verify", ref, "--method", "known_channel", "--by", "ola")
    dsr("cases", "verify", ref, "--method", "known_channel", "--by", "ola", code=1)
    for system in load_settings(None).organization("branninfo").systems:
        dsr("cases", "erasure", ref, "--system", system, "--done", "--by", "ola")
    dsr("drafts", "list", "--json")
    dsr("drafts", "approve", ref, "--by", "ola")
    dsr("cases", "close", ref, "--by", "ola")
    dsr("cases", "close", ref, "--by", "ola", code=1)
    dsr("cases", "new", "--org", "nope", "--requester", ADDRESS, "--by", "ola", code=2)
    return logged, ref


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_whole_case_logs_its_steps_and_no_personal_data(tmp_path, log_format):
    logged, ref = _run_whole_case(tmp_path, log_format)
    text = "\n".join(logged)
    # Nothing that identifies the requester, in any spelling. Checked first, so a leak is
    # reported as a leak even when it also breaks the checks below.
    forbidden = {"address": ADDRESS, "fødselsnummer": FNR, "fødselsnummer (6 5)": FNR_SPACED,
                 "phone": PHONE, "phone (digits)": PHONE.replace(" ", ""), "name": NAME,
                 "address domain": ADDRESS.split("@")[1], "message body": BODY_WORDS}
    for what, value in forbidden.items():
        assert value.lower() not in text.lower(), f"the requester's {what} reached the log"
    # Something was logged, and the right things: otherwise the check above proves nothing.
    assert ref in text
    for step in ("command started", "database opened", "case opened", "case moved",
                 "erasure settled", "erasure checklist settled", "draft added", "draft approved",
                 "command refused"):
        assert step in text, f"no {step!r} in the log"
    assert EMAIL_MASK in text and FNR_MASK in text  # the refusals that quoted them were redacted
    if log_format == "json":
        records = [json.loads(line) for line in logged]
        assert all(isinstance(r, dict) and {"time", "level", "logger", "message"} <= set(r)
                   for r in records)
        assert any(r.get("ref") == ref and r.get("to_state") == "closed" for r in records)


def test_a_real_process_logs_to_stderr_and_leaves_stdout_alone(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    env.update({"DSR_DATABASE__URL": f"sqlite:///{tmp_path / 'dsr.db'}",
                "DSR_LOG__LEVEL": "DEBUG", "DSR_LOG__FORMAT": "json"})
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "cases", "new", "--org", "bagges", "--requester",
         ADDRESS, "--name", NAME, "--by", "ola", "--json", "--text",
         f"Jeg vil ha innsyn. Fnr {FNR}, mobil +47 {PHONE}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ref = json.loads(result.stdout)["ref"]  # stdout is the command's JSON and nothing else
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(r["message"] == "case opened" and r["ref"] == ref for r in records)
    for secret in (ADDRESS, FNR, PHONE, NAME):
        assert secret not in result.stderr


def test_the_handler_follows_a_swapped_stderr(monkeypatch):
    handler = StderrHandler()
    handler.setFormatter(RedactingFormatter())
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    handler.emit(_record("to %s", ADDRESS))
    assert swapped.getvalue().strip().endswith(f"to {EMAIL_MASK}")

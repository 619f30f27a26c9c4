"""No personal number reaches the database, whatever field staff or a requester typed it in.

A whole run through the CLI puts a fødselsnummer, spelt a different way each time, into every
field a person can type: the request text, the name, `--by`, reasons, notes, the law of a kept
erasure, an edited reply. Then every column of every table but the raw message is scanned.
"""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from assistant.cli import cli
from assistant.understand.pii import contains_personal_number
from tests.test_pii import FNR, make_fnr

SPELLINGS = [
    FNR,
    f"{FNR[:6]} {FNR[6:]}",
    f"{FNR[:6]}.{FNR[6:]}",
    f"{FNR[:6]}  {FNR[6:]}",
    f"{FNR[:6]}\t{FNR[6:]}",
    f"{FNR[:6]}\n{FNR[6:]}",
    f"{FNR[:2]} {FNR[2:4]} {FNR[4:6]} {FNR[6:]}",
    f"{FNR[:6]}\u2013{FNR[6:]}",
    f"{FNR[:6]}\u200b{FNR[6:]}",
    "".join(chr(0xFF10 + int(d)) for d in FNR),
]
D_NUMBER = make_fnr("430288")


class Desk:
    """The CLI on one temporary database, failing loudly when a step does not do its job."""

    def __init__(self, tmp_path):
        self.url = f"sqlite:///{tmp_path}/dsr.db"
        self.tmp_path = tmp_path
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0) -> str:
        result = self.runner.invoke(cli, list(args), env={"DSR_DATABASE__URL": self.url})
        assert result.exit_code == expect, (args, result.output, result.exception)
        return result.output


def spelling(index: int) -> str:
    return SPELLINGS[index % len(SPELLINGS)]


def test_no_column_holds_a_personal_number_after_a_run_that_typed_them_everywhere(tmp_path):
    dsr = Desk(tmp_path)
    first = json.loads(dsr(
        "cases", "new", "--org", "branninfo", "--requester", "kari@example.no",
        "--name", f"Kari {spelling(1)}", "--by", f"ola {spelling(2)}", "--json",
        "--text", f"Slett alt om meg. Fødselsnummer {spelling(3)}, D-nummer {D_NUMBER}.",
    ))["ref"]
    dsr("cases", "verify", first, "--method", "email_code", "--by", f"staff {spelling(4)}")
    dsr("cases", "extend", first, "--reason", f"Mange systemer for {spelling(5)}", "--by", "ola")
    for number, system in enumerate(["TMG", "Visma", "CRM"]):
        dsr("cases", "erasure", first, "--system", system, "--kept", "--law",
            f"bokføringsloven {spelling(6 + number)}", "--note", f"gjelder {spelling(7 + number)}",
            "--by", f"ola {spelling(8)}")
    edited = tmp_path / "edited.txt"
    edited.write_text(f"Hei Kari ({spelling(9)}), vi trenger mer tid.\n", encoding="utf-8")
    dsr("drafts", "approve", first, "--by", "ola", "--edit-file", str(edited))  # the notice
    dsr("drafts", "approve", first, "--by", "ola", "--edit-file", str(edited))  # the reply

    second = json.loads(dsr(
        "cases", "new", "--org", "bagges", "--requester", "per@example.no", "--by", "ola",
        "--intent", "access", "--json",
    ))["ref"]
    dsr("cases", "verify", second, "--method", "known_channel", "--by", "ola")
    dsr("drafts", "reject", second, "--reason", f"Ikke kunde: {spelling(0)}", "--by", "ola")
    dsr("cases", "reopen", second, "--by", "ola", "--reason", f"feil, {spelling(1)}")
    dsr("cases", "close", second, "--by", "ola", "--reason", f"ferdig {spelling(2)}")

    found = scan_for_numbers(dsr.url)
    assert found == []
    # The run really stored what was typed, masked: the scan looked at real text.
    shown = dsr("cases", "show", first, "--json")
    assert "[fødselsnummer]" in shown and "bokføringsloven" in shown


def scan_for_numbers(url: str) -> list[str]:
    """Every text column of every table but the raw message, read back and searched."""
    engine = create_engine(url)
    hits: list[str] = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')).mappings():
                for column, value in row.items():
                    if (table, column) == ("messages", "raw") or not isinstance(value, str):
                        continue
                    digits = re.sub(r"\D", "", value)
                    if contains_personal_number(value) or FNR in digits or D_NUMBER in digits:
                        hits.append(f"{table}.{column}")
    engine.dispose()
    return hits


def test_headers_and_attachment_names_of_a_mail_are_masked():
    from assistant.mail.parse import parse_mail

    raw = (f"From: Kari {FNR[:6]} {FNR[6:]} <kari@example.no>\r\n"
           f"To: kundesenter@branninfo.no\r\nSubject: Innsyn for {FNR}\r\n"
           f"Message-ID: <{FNR}.1@example.no>\r\nIn-Reply-To: <{FNR}.0@example.no>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nSe vedlegg.\r\n"
           "--b\r\nContent-Type: application/pdf\r\n"
           f'Content-Disposition: attachment; filename="skatt_{FNR}.pdf"\r\n\r\nJVBERi0=\r\n'
           "--b--\r\n").encode()
    mail = parse_mail(raw)
    shown = [mail.from_name, mail.subject, mail.message_id, mail.in_reply_to,
             *[a.filename or "" for a in mail.attachments]]
    assert mail.from_addr == "kari@example.no"
    assert all(FNR not in value and not contains_personal_number(value) for value in shown), shown
    assert any(a.filename and a.filename.endswith(".pdf") for a in mail.attachments)

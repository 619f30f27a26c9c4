"""`dsr import`: backfilling saved mail through the same intake as SMTP and IMAP."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import cli

REALWORLD = Path(__file__).resolve().parents[1].parent / "shared" / "realworld" / "mime"


def run(tmp_path: Path, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args),
                                env={"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/dsr.db"})
    assert result.exit_code == expect, (args, result.output, result.exception)
    return result.output


def request(to: str, sender: str, subject: str, body: str, date: str) -> bytes:
    return (f"Received: from mx.example.no by mail.example.no; {date}\n"
            f"From: {sender}\nTo: {to}\nSubject: {subject}\nDate: Mon, 1 Jan 2024 09:00:00 +0100\n"
            f"Message-ID: <{abs(hash((sender, subject)))}@example.no>\n\n{body}\n").encode()


def test_a_folder_of_saved_mail_becomes_cases_once(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.eml").write_bytes(request(
        "kundesenter@branninfo.no", "Kari <kari@example.no>", "innsyn",
        "Hei, jeg vil se hvilke opplysninger dere har om meg.", "Tue, 3 Nov 2026 10:15:00 +0100"))
    (folder / "b.txt").write_bytes(request(
        "post@bagges.no", "per@example.no", "Slett meg",
        "Vennligst slett alle opplysninger om meg.", "Wed, 4 Nov 2026 11:00:00 +0100"))
    (folder / "notes.md").write_text("# not mail\n", encoding="utf-8")
    first = run(tmp_path, "import", str(folder))
    assert "stored 2" in first and "not mail 1" in first and "processed" in first
    cases = json.loads(run(tmp_path, "cases", "list", "--json"))
    assert sorted(c["org"] for c in cases) == ["bagges", "branninfo"]
    received = {c["org"]: c["received_at"][:10] for c in cases}
    assert received == {"branninfo": "2026-11-03", "bagges": "2026-11-04"}, "from Received"
    second = run(tmp_path, "import", str(folder))
    assert "stored 0" in second and "seen before 2" in second
    assert len(json.loads(run(tmp_path, "cases", "list", "--json"))) == 2


def test_old_mail_opens_its_case_without_a_receipt_and_recent_mail_is_acknowledged(tmp_path):
    """A backfill does not send "we have received your request" for a request whose due date
    passed long ago; the trail says so. A request still within its deadline gets its receipt."""
    recent = format_datetime(datetime.now(timezone.utc) - timedelta(days=3))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "old.eml").write_bytes(request(
        "kundesenter@branninfo.no", "kari@example.no", "innsyn",
        "Jeg ber om innsyn i opplysningene dere har om meg.", "Tue, 5 Mar 2024 10:15:00 +0100"))
    (folder / "new.eml").write_bytes(request(
        "post@bagges.no", "per@example.no", "Slett meg",
        "Vennligst slett alle opplysninger om meg.", recent))
    run(tmp_path, "import", str(folder))
    by_org = {c["org"]: c for c in json.loads(run(tmp_path, "cases", "list", "--json"))}
    kinds = {org: [e["kind"] for e in json.loads(
        run(tmp_path, "cases", "show", c["ref"], "--json"))["events"]] for org, c in by_org.items()}
    assert "acknowledgement_skipped" in kinds["branninfo"]
    assert "acknowledged" not in kinds["branninfo"]
    assert "acknowledged" in kinds["bagges"] and "acknowledgement_skipped" not in kinds["bagges"]


def test_store_only_leaves_the_deciding_to_the_worker(tmp_path):
    path = tmp_path / "one.eml"
    path.write_bytes(request("kundesenter@branninfo.no", "ola@example.no", "sletting",
                             "Slett meg fra kundelisten deres.", "Tue, 3 Nov 2026 10:15:00 +0100"))
    output = run(tmp_path, "import", "--store-only", str(path))
    assert "stored 1" in output and "processed" not in output
    assert json.loads(run(tmp_path, "cases", "list", "--json")) == []


def test_a_missing_path_is_a_usage_error(tmp_path):
    run(tmp_path, "import", str(tmp_path / "nope.mbox"), expect=2)


@pytest.mark.skipif(not REALWORLD.is_dir(), reason="../shared/realworld/mime is not beside the repo")
def test_every_real_world_file_goes_through_import_twice_and_the_second_run_adds_nothing(tmp_path):
    files = sorted(p for p in REALWORLD.rglob("*") if p.is_file() and p.name != "README.md")
    assert len(files) >= 60
    for path in files:
        first = run(tmp_path, "import", str(path))
        assert "stored 1" in first or "seen before 1" in first, (path, first)
        second = run(tmp_path, "import", str(path))
        assert "stored 0" in second, (path, second)

"""`dsr import`: .eml files, folders, mbox files and Maildirs stored once, with a receipt time
from the topmost Received header, else Date, else the file's mtime."""

from __future__ import annotations

import mailbox
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from assistant.channels.files import ImportReport, import_paths, receipt_time
from assistant.store.db import open_store, session_scope
from assistant.store.models import Message

REPO = Path(__file__).resolve().parents[1]
REALWORLD = REPO.parent / "shared" / "realworld" / "mime"


def message(n: int, *, received: str | None = None, date: str | None = None) -> bytes:
    headers = []
    if received:
        headers.append(f"Received: from mx.example.no by mail.example.no;\r\n\t{received}")
    headers.append("Received: from client by mx.example.no; Sun, 1 Jan 2017 00:00:00 +0000")
    headers += [f"From: kari{n}@example.no", "To: post@bagges.no", f"Subject: Sletting {n}",
                f"Message-ID: <imp{n}@example.no>"]
    if date:
        headers.append(f"Date: {date}")
    return ("\r\n".join(headers) + f"\r\n\r\nSlett meg ({n}).\r\n").encode()


@pytest.fixture
def sqlite_engine(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'dsr.db'}")


def rows(engine) -> list[Message]:
    with session_scope(engine) as session:
        return list(session.execute(select(Message).order_by(Message.id)).scalars())


def count(engine) -> int:
    with session_scope(engine) as session:
        return session.execute(select(func.count()).select_from(Message)).scalar_one()


# --------------------------------------------------------------------- receipt time

def test_receipt_time_is_the_topmost_received_header():
    raw = message(1, received="Sun, 30 Nov 2025 10:15:00 +0100 (CET)",
                  date="Sat, 29 Nov 2025 23:00:00 +0100")
    assert receipt_time(raw) == datetime(2025, 11, 30, 9, 15, tzinfo=timezone.utc)


def test_receipt_time_falls_back_to_date_then_mtime():
    no_received = b"From: a@example.no\r\nDate: Mon, 01 Dec 2025 08:00:00 +0100\r\n\r\nx"
    assert receipt_time(no_received) == datetime(2025, 12, 1, 7, tzinfo=timezone.utc)
    broken = b"Received: from x by y; not a date\r\nDate: neither\r\n\r\nx"
    mtime = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc).timestamp()
    assert receipt_time(broken, mtime) == datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    no_zone = b"Date: Mon, 01 Dec 2025 08:00:00 -0000\r\n\r\nx"  # zone unknown: read as UTC
    assert receipt_time(no_zone) == datetime(2025, 12, 1, 8, tzinfo=timezone.utc)
    assert receipt_time(b"").tzinfo is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.one_of(st.none(), st.floats(allow_nan=True)))
def test_receipt_time_never_raises(raw, mtime):
    assert receipt_time(b"Received: x;" + raw + b"\r\nDate: " + raw, mtime).tzinfo is not None


# --------------------------------------------------------------------- the sources

def test_eml_files_and_folders(sqlite_engine, tmp_path):
    folder = tmp_path / "mail"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.eml").write_bytes(message(1, date="Sun, 30 Nov 2025 10:00:00 +0100"))
    (folder / "sub" / "b.EML").write_bytes(message(2))
    (folder / "notes.txt").write_text("not mail")
    report = import_paths(sqlite_engine, [folder])
    assert (report.stored, report.seen_before, report.unreadable, report.ignored) == (2, 0, 0, 1)
    stored = rows(sqlite_engine)
    assert {m.channel for m in stored} == {"import"} and {m.status for m in stored} == {"stored"}
    assert stored[0].raw == message(1, date="Sun, 30 Nov 2025 10:00:00 +0100")
    # The topmost Received header of message 1 is the one from 2017.
    assert stored[0].received_at == datetime(2017, 1, 1, tzinfo=timezone.utc)
    # A file named on the command line is read whatever its name.
    report = import_paths(sqlite_engine, [folder / "notes.txt", folder / "a.eml"])
    assert (report.stored, report.seen_before) == (1, 1)


def test_an_mbox_with_three_messages(sqlite_engine, tmp_path):
    path = tmp_path / "archive.mbox"
    box = mailbox.mbox(str(path))
    raws = [message(i, received=f"{i} Dec 2025 12:00:00 +0100") for i in range(1, 4)]
    for raw in raws:
        box.add(raw)
    box.flush()
    box.close()
    seen: list[tuple[int, int]] = []
    report = import_paths(sqlite_engine, [path],
                          progress=lambda r: seen.append((r.processed, r.total)))
    assert (report.stored, report.seen_before, report.total) == (3, 0, 3)
    assert seen[-1] == (3, 3) and (1, 3) in seen
    stored = rows(sqlite_engine)
    assert [m.received_at.day for m in stored] == [1, 2, 3]
    assert all(b"Slett meg" in m.raw and not m.raw.startswith(b"From ") for m in stored)
    again = import_paths(sqlite_engine, [path])
    assert (again.stored, again.seen_before) == (0, 3)
    assert count(sqlite_engine) == 3


def test_a_maildir_with_three_messages(sqlite_engine, tmp_path):
    path = tmp_path / "Maildir"
    box = mailbox.Maildir(str(path))
    for i in range(1, 4):
        key = box.add(message(i))
        if i == 3:
            msg = box.get_message(key)
            msg.set_subdir("cur")
            msg.add_flag("S")
            box[key] = msg
    box.add_folder("Sent").add(message(99))  # a subfolder is not read unless named
    report = import_paths(sqlite_engine, [path])
    assert (report.stored, report.seen_before) == (3, 0)
    assert {m.message_id for m in rows(sqlite_engine)} == {f"<imp{i}@example.no>" for i in (1, 2, 3)}
    again = import_paths(sqlite_engine, [path])
    assert (again.stored, again.seen_before) == (0, 3)


def test_the_file_time_when_no_header_has_a_date(sqlite_engine, tmp_path):
    path = tmp_path / "undated.eml"
    path.write_bytes(b"From: a@example.no\r\nSubject: hei\r\n\r\nslett meg\r\n")
    when = datetime(2024, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
    os.utime(path, (when.timestamp(), when.timestamp()))
    import_paths(sqlite_engine, [path])
    assert rows(sqlite_engine)[0].received_at == when


def test_unreadable_paths_are_counted_not_raised(sqlite_engine, tmp_path):
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    report = import_paths(sqlite_engine, [tmp_path / "missing.mbox", empty])
    assert (report.stored, report.unreadable) == (0, 2)
    assert [reason for _, reason in report.problems] == ["no such file or folder", "empty"]
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.eml"
        locked.write_bytes(message(1))
        locked.chmod(0)
        assert import_paths(sqlite_engine, [locked]).unreadable == 1


# --------------------------------------------------------------------- real-world mail

def test_every_real_world_message_is_stored_once(engine):
    if not REALWORLD.is_dir():
        pytest.skip(f"{REALWORLD} is absent: the shared real-world MIME corpus is not here")
    files = sorted(p for p in REALWORLD.rglob("*") if p.is_file())
    assert files
    first = import_paths(engine, files)
    assert first.unreadable == 0
    assert first.stored + first.seen_before == first.total >= len(files)
    assert first.stored > 0
    second = import_paths(engine, files)
    assert second.stored == 0 and second.seen_before == first.stored + first.seen_before
    # And the folder as a whole: its .eml files were stored above, the rest is not mail by name.
    third = import_paths(engine, [REALWORLD])
    assert third.stored == 0 and third.unreadable == 0
    now = datetime.now(timezone.utc) + timedelta(days=3)
    assert all(m.received_at < now for m in rows(engine))


def test_the_report_starts_empty():
    assert ImportReport().processed == 0

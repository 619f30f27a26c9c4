"""`dsr import PATH…`: backfill mail from files through the same intake as the listeners.

Reads single messages (``.eml`` or any file named on the command line), folders of them, mbox
files and Maildirs, and stores each message's bytes, exactly as found, with
:func:`store_raw` (``channel="import"``). It neither parses nor classifies: the intake worker does
that from the stored row. A message stored before (same Message-ID and bytes) is skipped, so an
import can be run again, or interrupted and resumed, without duplicates.

What a path may be:
- a file: an mbox when its first line is an mbox ``From `` line, otherwise one message;
- a Maildir (a folder with ``cur/`` and ``new/``): its messages, not its ``.Sub`` folders (a
  Maildir's Sent folder holds our own mail; name a subfolder to import it);
- any other folder: walked; ``.eml`` files are messages, ``.mbox`` files and files starting with
  a ``From `` line are mboxes, Maildirs inside are read as above, anything else is ignored.

Receipt time (DESIGN.md): the date of the topmost ``Received:`` header (after its last ``;``),
else the ``Date:`` header, else the file's modification time; parsed leniently, never raising.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import mailbox
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from ..store.db import session_scope
from ..vocabulary import Channel
from .store import header_block, store_raw

log = logging.getLogger("dsr.import")

#: Dates outside this window are taken for garbage and the next source is tried.
_EARLIEST = datetime(1980, 1, 1, tzinfo=timezone.utc)
_FUTURE_SLACK = timedelta(days=2)


@dataclass
class ImportReport:
    """What an import did; `problems` names each path that could not be read, and why."""

    stored: int = 0
    seen_before: int = 0
    unreadable: int = 0
    ignored: int = 0  # files in a folder that are not mail (by name and first line)
    total: int = 0      # messages found so far (grows as folders and mboxes are opened)
    processed: int = 0  # of those, stored, seen before or unreadable
    problems: list[tuple[str, str]] = field(default_factory=list)


Progress = Callable[[ImportReport], None]


@dataclass
class _Item:
    """One message found: its bytes (read lazily) and where it came from."""

    source: str
    read: Callable[[], bytes]
    mtime: float | None


# --------------------------------------------------------------------- receipt time

def _parse_date(value: object) -> datetime | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # "-0000": the zone is unknown; RFC 5322 says it is UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        if not _EARLIEST <= parsed <= datetime.now(timezone.utc) + _FUTURE_SLACK:
            return None
    except (OverflowError, ValueError):
        return None
    return parsed


def receipt_time(raw: bytes, mtime: float | None = None) -> datetime:
    """When the message reached its mailbox: the topmost Received header's date, else Date,
    else the file's mtime, else now. Never raises."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
            header_block(raw) + b"\n\n")
        received = headers.get_all("Received") or []
        if received:
            top = str(received[0])
            if ";" in top:
                found = _parse_date(top.rsplit(";", 1)[1])
                if found is not None:
                    return found
        found = _parse_date(headers.get("Date"))
        if found is not None:
            return found
    except Exception:  # noqa: BLE001  (hostile headers: fall back to the file's time)
        pass
    if mtime is not None:
        try:
            return datetime.fromtimestamp(mtime, timezone.utc)
        except (OverflowError, OSError, ValueError):
            pass
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------- finding the messages

def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _looks_like_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.lstrip(b"\r\n").startswith(b"From ")


# Exported mail comes as .eml, but also as .msg.txt, .txt or a bare file from an old client's
# "save as"; a saved HTML body (.html) is mail without its headers. Documents are not mail.
_MAIL_SUFFIXES = frozenset({"", ".txt", ".msg", ".mail", ".html", ".htm"})
_HEADER_LINE = re.compile(rb"^[!-9;-~]{1,76}:[ \t]")


def _looks_like_message(path: Path, suffix: str) -> bool:
    """A text file that opens with a header line (or, saved from a browser or client, with HTML):
    by its first bytes, not its name alone, so a README or a PDF in the folder is left out."""
    if suffix not in _MAIL_SUFFIXES:
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if b"\x00" in head:
        return False
    start = head.lstrip(b"\r\n\t \xef\xbb\xbf")
    if suffix in (".html", ".htm"):
        return start[:1] == b"<"
    return bool(_HEADER_LINE.match(start))


def _file_reader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def _maildir_items(path: Path) -> list[_Item]:
    items = []
    for sub in ("new", "cur"):
        folder = path / sub
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            file = Path(entry.path)
            items.append(_Item(str(file), _file_reader(file), _mtime(file)))
    return items


def _mbox_items(path: Path) -> list[_Item]:
    box = mailbox.mbox(str(path), factory=None, create=False)
    mtime = _mtime(path)
    keys = list(box.iterkeys())  # one scan of the file builds its table of contents
    return [_Item(f"{path}#{index + 1}", lambda key=key: box.get_bytes(key), mtime)
            for index, key in enumerate(keys)]


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _sources(path: Path, report: ImportReport) -> Iterator[list[_Item]]:
    """Lists of messages under a path; problems are counted, never raised."""
    try:
        if path.is_dir():
            if _is_maildir(path):
                yield _maildir_items(path)
                return
            for entry in sorted(path.iterdir()):
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    yield from _sources(entry, report)
                elif entry.is_file():
                    suffix = entry.suffix.lower()
                    if entry.name.startswith("."):
                        report.ignored += 1
                    elif suffix == ".mbox" or _looks_like_mbox(entry):
                        yield _mbox_items(entry)
                    elif suffix == ".eml" or _looks_like_message(entry, suffix):
                        yield [_Item(str(entry), _file_reader(entry), _mtime(entry))]
                    else:
                        report.ignored += 1
            return
        if not path.exists():
            _problem(report, path, "no such file or folder")
            return
        if _looks_like_mbox(path):
            yield _mbox_items(path)
        else:
            yield [_Item(str(path), _file_reader(path), _mtime(path))]
    except (OSError, mailbox.Error, UnicodeError) as exc:
        _problem(report, path, _reason(exc))


def _problem(report: ImportReport, path: Path | str, reason: str) -> None:
    report.unreadable += 1
    report.problems.append((str(path), reason))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


# --------------------------------------------------------------------- importing

def import_paths(engine: Engine, paths: Iterable[str | os.PathLike[str]],
                 progress: Progress | None = None) -> ImportReport:
    """Store every message found under the paths (one transaction each); what was done.

    ``progress``, when given, is called with the report after each message (and whenever more
    messages are found, so ``report.total`` grows). A database failure is raised: nothing that
    was committed before it is lost, and running the import again skips what was stored."""
    report = ImportReport()
    for path in paths:
        for items in _sources(Path(path), report):
            report.total += len(items)
            if progress is not None:
                progress(report)
            for item in items:
                _import_one(engine, item, report)
                report.processed += 1
                if progress is not None:
                    progress(report)
    log.info("import finished", extra={"stored": report.stored, "seen_before": report.seen_before,
                                       "unreadable": report.unreadable, "ignored": report.ignored})
    return report


def _import_one(engine: Engine, item: _Item, report: ImportReport) -> None:
    try:
        raw = item.read()
    except (OSError, mailbox.Error, KeyError, UnicodeError) as exc:
        _problem(report, item.source, _reason(exc))
        return
    if not raw.strip():
        _problem(report, item.source, "empty")
        return
    with session_scope(engine) as session:
        _, created = store_raw(session, channel=Channel.IMPORT.value, raw=raw,
                               received_at=receipt_time(raw, item.mtime))
    if created:
        report.stored += 1
    else:
        report.seen_before += 1

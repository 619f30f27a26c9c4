"""Logging for a privacy product: to stderr, with personal data redacted on the way out.

dsr handles people's requests about their own data, so its logs must not become a second,
unmanaged copy of that data. Two rules keep them clean:

1. **Call sites log facts about the work, never the person or what they wrote.** Log case
   references, states, ids, kinds, organisation ids, channels and counts. Never log a requester's
   address or name, a subject line, or a message body or draft text, not even at DEBUG. Put the
   structured facts in ``extra`` (``log.info("case opened", extra={"ref": ref, "org": org})``);
   the text format prints them as ``key=value``, the JSON format as fields. (``logging`` refuses
   the keys a record already has, such as ``message``, ``name`` or ``args``: say ``message_id``.)
2. **The formatter redacts what slips through anyway.** A refusal echoes what staff typed, an
   exception quotes a value, a library puts an address in its error. In the message, its
   arguments, ``extra`` fields, exception text, tracebacks and stack traces, every email address
   becomes ``[email]``, every phone number ``[phone]`` and every valid fødselsnummer, D-number or
   H-number ``[fødselsnummer]`` (the masking of :mod:`assistant.understand.pii`). Every argument,
   ``extra`` value and traceback line is cut at :data:`MAX_VALUE_CHARS`, the message at
   :data:`MAX_MESSAGE_CHARS`, so a body logged by mistake shows up as a stub, not a copy.

The whole address is redacted, domain included: a small company's or a private domain
(``ola@nordmann.no``) identifies the person as well as the address does, and the organisation a
message was routed to is logged by its id anyway.

Redaction runs only in the formatter of the handler :func:`setup_logging` installs, and that
handler is the only one the ``dsr`` logger feeds (it stops propagating to the root logger), so no
other handler sees a record before it is cleaned.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import datetime, timezone
from typing import Any, TextIO

from .config import Settings
from .understand.pii import FNR_MASK, mask_personal_numbers

ROOT_LOGGER = "dsr"
EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
#: One argument, ``extra`` value or traceback line: enough for a reference, a path or a reason.
MAX_VALUE_CHARS = 300
#: The message after its arguments are put in.
MAX_MESSAGE_CHARS = 1000

# The parts of an address as people write them, Unicode letters included (ø@æ.no is valid).
# A quote may sit inside the local part (o'brien@…) but is not taken from before it ('ola@…').
_EMAIL = re.compile(r"[\w.!#$%&*+/=?^`{|}~-][\w.!#$%&'*+/=?^`{|}~-]*@[\w-]+(?:\.[\w-]+)+")
# Norwegian numbers: 8 digits, first 2-9, written whole or grouped 3-2-3 / 2-2-2-2 / 4-4, with an
# optional +47, 0047 or (+47) in front. A dash is not accepted in the 4-4 form, so a case
# reference such as DSR-2026-0042 is never taken for a phone number.
_SEP = r"[ \u00a0.-]"
_NO_LOCAL = (
    rf"(?:[2-9][0-9]{{7}}|[2-9][0-9]{{2}}{_SEP}[0-9]{{2}}{_SEP}[0-9]{{3}}"
    rf"|[2-9][0-9]{_SEP}[0-9]{{2}}{_SEP}[0-9]{{2}}{_SEP}[0-9]{{2}}|[2-9][0-9]{{3}}[ \u00a0][0-9]{{4}})"
)
_NO_PHONE = re.compile(
    rf"(?<![\w+.])(?:(?:\(\+47\)|\+47|0047)[ \u00a0-]?)?{_NO_LOCAL}(?![\w])"
)
# Anything written with an international prefix: +NN or 00NN, then 6 to 14 more digits with the
# usual separators. Offsets such as +01:00 in timestamps start with 0 after the plus and never match.
_INTL_PHONE = re.compile(r"(?<![\w+.])\(?(?:\+|00)[1-9](?:[ \u00a0.()/-]{0,2}[0-9]){6,14}(?![\w])")

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """``text`` with personal numbers, email addresses and phone numbers replaced by placeholders.

    Personal numbers go first, so their digits are never half-taken for a phone number; emails
    before phones, so the digits of ``91234567@sms.example`` go with the address.
    """
    if not text:
        return text
    text = mask_personal_numbers(text)
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _INTL_PHONE.sub(PHONE_MASK, text)
    return _NO_PHONE.sub(PHONE_MASK, text)


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Shorten ``text`` to ``limit`` characters, saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more chars cut]"


def clean(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Redact, then cut: cutting first could split an address so the pattern no longer sees it."""
    return cut(redact(text), limit)


def _clean_arg(value: Any) -> Any:
    """A message argument made safe; numbers stay numbers so ``%d`` and ``%.1f`` still work."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return clean(str(value))


def _clean_value(value: Any, depth: int = 0) -> Any:
    """An ``extra`` value made safe and JSON-ready; lists and dicts are cleaned item by item."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if depth < 3 and isinstance(value, (list, tuple, set, frozenset)):
        return [_clean_value(item, depth + 1) for item in value]
    if depth < 3 and isinstance(value, dict):
        return {clean(str(k)): _clean_value(v, depth + 1) for k, v in value.items()}
    return clean(str(value))


def _clean_lines(text: str) -> str:
    """A traceback or stack, redacted as a whole (an address may span a wrapped line), then
    each line cut, so an exception that quotes a whole body is still only a stub."""
    return "\n".join(cut(line) for line in redact(text).splitlines())


class RedactingFormatter(logging.Formatter):
    """Text lines: ``time LEVEL logger message key=value …``, with personal data redacted.

    The record itself is never changed, so no other handler can end up with a half-cleaned copy.
    """

    def __init__(self, as_json: bool = False) -> None:
        super().__init__()
        self.as_json = as_json

    def message(self, record: logging.LogRecord) -> str:
        """The message with its arguments cleaned one by one and the result cleaned again."""
        msg = clean(str(record.msg), MAX_MESSAGE_CHARS)
        args = record.args
        if isinstance(args, dict):
            args = {key: _clean_arg(value) for key, value in args.items()}
        elif args:
            args = tuple(_clean_arg(value) for value in args)
        try:
            text = msg % args if args else msg
        except (TypeError, ValueError, KeyError):
            text = f"{msg} {args!r}"  # a malformed call still logs, still cleaned below
        return clean(text, MAX_MESSAGE_CHARS)

    def extras(self, record: logging.LogRecord) -> dict[str, Any]:
        """The fields a call site passed in ``extra``, cleaned."""
        return {key: _clean_value(value) for key, value in vars(record).items()
                if key not in _RECORD_ATTRS and not key.startswith("_")}

    def exception(self, record: logging.LogRecord) -> str | None:
        """Exception and stack text, cleaned; recomputed, never taken from ``record.exc_text``,
        which another formatter may have filled unredacted."""
        parts = []
        if record.exc_info and record.exc_info[0] is not None:
            parts.append("".join(traceback.format_exception(*record.exc_info)).rstrip())
        if record.stack_info:
            parts.append(record.stack_info.rstrip())
        return _clean_lines("\n".join(parts)) if parts else None

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, tz=timezone.utc)
        message, extras, exc = self.message(record), self.extras(record), self.exception(record)
        if self.as_json:
            data: dict[str, Any] = {"time": when.isoformat(timespec="milliseconds"),
                                    "level": record.levelname, "logger": record.name,
                                    "message": message}
            data.update({k: v for k, v in extras.items() if k not in data})
            if exc:
                data["exception"] = exc
            return json.dumps(data, ensure_ascii=False, default=str)
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())
        line = f"{when.isoformat(timespec='milliseconds')} {record.levelname} {record.name} {message}"
        line = f"{line} {fields}" if fields else line
        return f"{line}\n{exc}" if exc else line


def _text_value(value: Any) -> str:
    """A field for the text format: lists joined by commas, text with spaces quoted."""
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or " " in text or '"' in text) else text


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the moment of logging, not at setup: a test
    runner or an embedding program that swaps stderr still gets the lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def get_logger(name: str) -> logging.Logger:
    """``dsr.<name>``: every logger of the package hangs under the one ``setup_logging`` feeds."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


def setup_logging(settings: Settings) -> logging.Logger:
    """Point the ``dsr`` logger at stderr with the configured level and format.

    Idempotent: it replaces the handler it installed before rather than adding another, so a
    command that loads settings twice, or a test that runs many commands in one process, never
    gets doubled lines, and the latest settings win. Propagation to the root logger is switched
    off so no handler other than the redacting one ever formats a dsr record.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in list(logger.handlers):
        if isinstance(handler, (StderrHandler, logging.NullHandler)):
            logger.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(RedactingFormatter(as_json=settings.log.format == "json"))
    logger.addHandler(handler)
    logger.setLevel(settings.log.level)
    logger.propagate = False
    return logger


# Until setup_logging runs (a library user, a test), records go nowhere rather than to Python's
# last-resort handler, which would print WARNING records to stderr unredacted.
logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())

__all__ = ["EMAIL_MASK", "FNR_MASK", "PHONE_MASK", "RedactingFormatter", "get_logger", "redact",
           "setup_logging"]

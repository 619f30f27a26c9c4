"""Raw email bytes to clean, masked text for the classifier, plus the headers the core needs.

Mail in a privacy inbox comes from every client and every decade: wrong charsets, broken MIME,
HTML-only bodies, 5 MB scans attached. Intake must never lose a message because the parser
choked, so :func:`parse_mail` never raises: whatever it cannot read becomes a short entry in
``ParsedMail.problems`` (no personal data in it) and the rest is still returned.

It must not stall either: anyone can send 25 MB built to make a parser slow (a Subject of
16,000 encoded words once cost the standard library 1.76 GB; 300,000 unclosed ``<script>`` tags
cost the old HTML path six minutes). So every input is bounded before the code that could be
slow on it sees it: the message structure is read with the plain ``compat32`` policy (no header
is parsed while the tree is built) and each header is capped as it is stored; only the few outer
headers the core needs go through ``email.policy.default``'s parser, capped. MIME nesting,
part count, lines, bodies and HTML are bounded too, each bound that triggers noting a fixed code
in ``problems``. The bounds are the ``MAX_*`` constants below.

Sender HTML is never rendered: lexbor (through selectolax, an HTML5 parser in C built for
hostile markup) only builds a tree that is walked to pull text out (django-helpdesk's
CVE-2021-3945 came from serving sender HTML to staff browsers). Every text field handed out
goes through :mod:`assistant.mail.safe` last: no controls, no bidi or zero-width tricks, no markup.
"""

from __future__ import annotations

import codecs
import email.policy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.feedparser import BytesFeedParser
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from functools import partial

from selectolax.lexbor import LexborHTMLParser, LexborNode

from assistant.mail.safe import safe_id, safe_line, safe_text
from assistant.understand.pii import mask_personal_numbers
from assistant.understand.reply_parser import strip_quotes_and_signature
from assistant.vocabulary import strip_reply_prefixes

__all__ = [
    "Attachment",
    "ParsedMail",
    "parse_mail",
    "html_to_text",
    "receipt_time_from_headers",
    "strip_quotes_and_signature",
    "auto_reason",
    "decode_bytes",
]

#: Body text kept for scoring (characters). Requests are short; this bounds the regex work.
MAX_SCORING_CHARS = 100_000
#: Body text kept in ``full_text`` (characters); the raw message is stored elsewhere anyway.
MAX_FULL_TEXT_CHARS = 1_000_000
#: Bytes of one body part decoded to text: enough for MAX_FULL_TEXT_CHARS in any charset.
MAX_PART_BYTES = 4 * MAX_FULL_TEXT_CHARS
#: HTML handed to the HTML parser (characters, after dropping inline ``data:`` images, which
#: can be megabytes in front of the text). lexbor parses this in milliseconds; our walk over
#: the tree is Python, about 0.1 s for the largest tree this allows.
MAX_HTML_CHARS = 500_000
#: HTML looked at before the ``data:`` images are dropped (so the regex that drops them is bounded).
MAX_HTML_SCAN_CHARS = 4 * MAX_HTML_CHARS
#: Nodes (elements and text) of the HTML tree walked for text: the walk is Python, about
#: 5-10 µs a node; a 500 KB Outlook mail has some 20,000.
MAX_HTML_NODES = 40_000
#: Open elements the HTML may nest. An HTML5 tree builder checks element scope by walking the
#: stack of open elements, so 100,000 nested ``<div>``s cost it 100,000² steps (30 s); real
#: mail nests a few dozen deep, a long forwarded thread a few hundred.
MAX_HTML_DEPTH = 500
#: Characters kept of one header field (RFC 5322 allows 998 per line, folded fields may be
#: longer; the policy's parser is superlinear in this).
MAX_HEADER_CHARS = 8_192
#: Header fields kept per part; the fields the core reads are kept anyway, up to MAX_SAME_HEADER
#: of each name (10,000 Received lines cost the parser and every later lookup).
MAX_HEADERS = 200
MAX_SAME_HEADER = 10
#: Addresses kept per address header kind (To, Cc, Reply-To) and Message-IDs kept of References.
MAX_ADDRESSES = 100
MAX_REFERENCES = 50
#: Multipart and message/rfc822 levels followed; a deeper part is kept as an opaque attachment.
#: The standard library's parser recurses once per level, and costs depth x lines.
MAX_MIME_DEPTH = 20
#: Parts kept; a message with more is read no further (each part costs the parser a Message).
MAX_PARTS = 500
#: Lines of raw message fed to the parser: it keeps one Python string per line (about 50 bytes
#: overhead each), so 25 MB of one-character lines would take over 1 GB. A 25 MB base64
#: attachment has about 340,000 lines.
MAX_LINES = 500_000
#: Lengths of the one-line fields handed out (after decoding).
MAX_SUBJECT_CHARS = 2_000
MAX_NAME_CHARS = 500
MAX_ADDRESS_CHARS = 320
MAX_FILENAME_CHARS = 255

#: Header fields the core reads: kept even past MAX_HEADERS (a From after 10,000 Received).
_KEEP_HEADERS = frozenset((
    "from", "to", "cc", "reply-to", "subject", "message-id", "in-reply-to", "references", "date",
    "return-path", "content-type", "content-transfer-encoding", "content-disposition",
    "mime-version", "auto-submitted", "list-id", "list-unsubscribe", "precedence",
    "x-auto-response-suppress", "x-autoreply", "x-autorespond",
))
_FEED_CHUNK = 64 * 1024
#: The parser for the few outer headers the core needs, applied to capped values only.
_HEADER_POLICY = email.policy.default


@dataclass
class Attachment:
    """An attachment as listed for staff; its content is never parsed."""

    filename: str | None
    content_type: str
    size: int


@dataclass
class ParsedMail:
    message_id: str = ""
    subject: str = ""
    from_addr: str = ""
    from_name: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    return_path: str | None = None
    date: datetime | None = None
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    text: str = ""
    full_text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    html_only: bool = False
    auto: str | None = None
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        """Record a problem once; callers pass fixed short codes, never message content."""
        if problem not in self.problems:
            self.problems.append(problem)


# --------------------------------------------------------------------------- headers


def _raw_header(msg: Message, name: str) -> str | None:
    """The header's raw value, bypassing any policy parser (which may be what failed)."""
    try:
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                return str(value)
    except Exception:  # noqa: BLE001
        return None
    return None


def _raw_headers(msg: Message, name: str) -> list[str]:
    """Every raw value of header ``name``, unfolded."""
    try:
        return [_unfold(str(v)) for k, v in msg.raw_items() if k.lower() == name.lower()]
    except Exception:  # noqa: BLE001
        return []


_LINESEP = re.compile(r"\r\n|\r|\n")


def _unfold(value: str) -> str:
    """RFC 5322 unfolding, as email.policy.default does before it parses a header."""
    return _LINESEP.sub("", value)


def _decode_raw(value: str) -> str:
    """RFC 2047 decoding that tolerates unknown charsets."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001
        return value


def _clean_ws(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


_SURROGATE = re.compile("[\ud800-\udfff]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _unsurrogate(text: str) -> str:
    """Raw 8-bit header bytes reach us as surrogate escapes; decode them like a body would.

    Left alone they are lost ('\ufffd') or break the database and JSON encoders later.
    """
    if not _SURROGATE.search(text):
        return text
    try:
        return decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    except UnicodeError:
        return text.encode("utf-8", "replace").decode("utf-8", "replace")


def _structured(name: str, value: str) -> object:
    """email.policy.default's header object for an (already capped) value; may raise."""
    return _HEADER_POLICY.header_factory(name, value)


def _header_text(msg: Message, name: str, mail: ParsedMail) -> str:
    """A header as text; a header that fails to parse gives its raw decoding and a problem."""
    raw = _raw_header(msg, name)
    if raw is None:
        return ""
    value = _unfold(raw)
    try:
        text = _clean_ws(str(_structured(name, value)))
        if not _SURROGATE.search(value) or not re.search("[\ufffd\ud800-\udfff]", text):
            return text  # RFC 6532 UTF-8 is decoded by the policy itself
        # Undecodable 8-bit bytes (e.g. latin-1): the policy gave U+FFFD; decode them ourselves.
        mail.note(f"8bit-header:{name.lower()}")
        return _clean_ws(_decode_raw(_unsurrogate(value)))
    except Exception:  # noqa: BLE001
        mail.note(f"bad-header:{name.lower()}")
    try:
        return _clean_ws(_decode_raw(value))
    except Exception:  # noqa: BLE001
        return ""


def _cut_after(value: str, separator: str, count: int) -> tuple[str, bool]:
    """``value`` up to its ``count``-th ``separator``; True when something was cut."""
    position = -1
    for _ in range(count):
        position = value.find(separator, position + 1)
        if position < 0:
            return value, False
    return value[:position], True


def _address_pairs(msg: Message, name: str, mail: ParsedMail) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs from every header called ``name``.

    At most MAX_ADDRESSES: the value is cut after that many commas before it is parsed (the
    policy's address parser costs about 5 ms per hundred addresses), so a quoted comma in a
    display name can only make the kept list shorter.
    """
    raws: list[str] = []
    for raw in _raw_headers(msg, name)[:MAX_SAME_HEADER]:
        raw, cut = _cut_after(raw, ",", MAX_ADDRESSES)
        if cut:
            mail.note("too-many-addresses")
        raws.append(raw)
    pairs: list[tuple[str, str]] = []
    try:
        for raw in raws:
            for address in getattr(_structured(name, raw), "addresses", ()):
                pairs.append((str(address.display_name or ""), str(address.addr_spec or "")))
            if len(pairs) >= MAX_ADDRESSES:
                break
    except Exception:  # noqa: BLE001
        mail.note(f"bad-header:{name.lower()}")
        try:
            pairs = list(getaddresses([_decode_raw(v) for v in raws]))
        except Exception:  # noqa: BLE001
            return []
    if len(pairs) > MAX_ADDRESSES:
        mail.note("too-many-addresses")
        pairs = pairs[:MAX_ADDRESSES]
    result = []
    for display, addr in pairs:
        display, addr = _unsurrogate(display), _unsurrogate(addr)
        addr = addr.strip().strip("<>").strip().lower()
        if addr and "@" in addr or addr in ("mailer-daemon", "postmaster"):
            result.append((_clean_ws(display), addr))
    return result


_MSG_ID = re.compile(r"<[^<>\s]+>")


def _msg_ids(value: str) -> list[str]:
    """Message-IDs from a References/In-Reply-To value; bare tokens if none are bracketed."""
    found = _MSG_ID.findall(value)
    if found:
        return found
    return [token for token in value.split() if "@" in token]


def _references(value: str, mail: ParsedMail) -> list[str]:
    """At most MAX_REFERENCES ids: the thread's root and the newest, as RFC 5322 3.6.4 trims."""
    ids = _msg_ids(value)
    if len(ids) > MAX_REFERENCES:
        mail.note("too-many-references")
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1):]
    return ids


def _aware(value: datetime | None) -> datetime | None:
    """Naive datetimes ("-0000" zones) are UTC by RFC 5322; the core wants aware ones."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    value = re.sub(r"\([^()]*\)", " ", value[:MAX_HEADER_CHARS])
    value = _clean_ws(value)
    try:
        return _aware(parsedate_to_datetime(value))
    except Exception:  # noqa: BLE001
        return None


def _read_headers(msg: Message, mail: ParsedMail) -> None:
    mail.message_id = (_msg_ids(_header_text(msg, "Message-ID", mail)) or [""])[0]
    subject = _header_text(msg, "Subject", mail)
    if _BIDI.search(subject):
        mail.note("bidi-controls")  # a reviewer should know the sender tried to hide something
    # Invisible characters go before masking: a zero-width space inside a personal number
    # must not let it slip past the mask.
    mail.subject = mask_personal_numbers(safe_text(subject, multiline=False, markup=False))
    senders = _address_pairs(msg, "From", mail)
    if senders:
        mail.from_name, mail.from_addr = senders[0]
        if _BIDI.search(mail.from_name + mail.from_addr):
            mail.note("bidi-controls")
    else:
        mail.note("missing-from")
    mail.to = [a for _, a in _address_pairs(msg, "To", mail)]
    mail.cc = [a for _, a in _address_pairs(msg, "Cc", mail)]
    mail.reply_to = [a for _, a in _address_pairs(msg, "Reply-To", mail)]
    mail.return_path = _return_path(msg)
    mail.in_reply_to = (_msg_ids(_header_text(msg, "In-Reply-To", mail)) or [""])[0]
    mail.references = _references(_header_text(msg, "References", mail), mail)
    raw_date = _raw_header(msg, "Date")
    if raw_date is not None:
        try:
            mail.date = _aware(getattr(_structured("Date", _unfold(raw_date)), "datetime", None))
        except Exception:  # noqa: BLE001
            mail.note("bad-header:date")
    if mail.date is None:
        mail.date = _parse_date(raw_date)
        if raw_date is not None and mail.date is None:
            mail.note("unparsable-date")


def _return_path(msg: Message) -> str | None:
    """"" for the null sender "<>" (bounces), None when the header is absent."""
    raw = _raw_header(msg, "Return-Path")
    if raw is None:
        return None
    value = _clean_ws(raw).strip("<>").strip()
    return value.lower()


# --------------------------------------------------------------------------- auto detection

# Matched after vocabulary.strip_reply_prefixes, so "SV: Autosvar: ..." reads like the lexicons read it.
_AUTO_SUBJECT = re.compile(
    r"(?:autosvar|automatisk svar|automatiskt svar|auto(?:matic)?[- ]?reply|"
    r"auto[- ]?response|autoreply|fravær|fråvær|frånvaro|out of (?:the )?office|"
    r"abwesenheit|ikke på kontoret|ute av kontoret|borte fra kontoret)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliverable|undelivered mail|delivery status notification|delivery failure|"
    r"mail delivery failed|failure notice|returned mail|kan ikke leveres|ikke levert|"
    r"leveringsfeil|olevererbart|kunde inte levereras",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"^(?:mailer-daemon|postmaster)(?:@|$)", re.IGNORECASE)
_NOREPLY_SENDER = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|ikke[-_.]?svar|noreply[-_.]?\w*)[^@]*@",
    re.IGNORECASE,
)


def auto_reason(msg: Message, from_addr: str = "", subject: str = "") -> str | None:
    """Why this mail must never be answered (RFC 3834, bounces, lists, no-reply), else None.

    Answering an auto-reply starts a mail loop; answering a list reaches strangers.
    """
    def raw(name: str) -> str | None:
        value = _raw_header(msg, name)
        return None if value is None else _clean_ws(value)

    try:
        content_type = msg.get_content_type()
    except Exception:  # noqa: BLE001
        content_type = ""
    if content_type == "multipart/report":
        return "bounce"
    submitted = raw("Auto-Submitted")
    if submitted is not None:
        token = re.split(r"[\s;(]", submitted.lower(), maxsplit=1)[0]
        if token and token != "no":
            return "auto-submitted"
    if raw("List-Id") is not None or raw("List-Unsubscribe") is not None:
        return "list"
    precedence = (raw("Precedence") or "").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return "list" if precedence == "list" else ("auto-reply" if "auto" in precedence else "bulk")
    if raw("X-Auto-Response-Suppress") is not None:
        return "auto-response-suppress"
    if raw("X-Autoreply") is not None or raw("X-Autorespond") is not None:
        return "auto-reply-header"
    return_path = raw("Return-Path")
    if return_path is not None and return_path.strip("<> ") == "":
        return "bounce"
    if _BOUNCE_SENDER.match(from_addr):
        return "bounce"
    if _NOREPLY_SENDER.match(from_addr):
        return "noreply-sender"
    if _BOUNCE_SUBJECT.search(subject):
        return "bounce"
    if _AUTO_SUBJECT.match(strip_reply_prefixes(subject.strip())):
        return "auto-reply-subject"
    return None


# --------------------------------------------------------------------------- body decoding


def _text_codec(name: str | None) -> str | None:
    """A real text codec for a declared charset, or None (unknown, or bytes-to-bytes)."""
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip('"').lower())
    except (LookupError, TypeError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


_SINGLE_BYTE = re.compile(r"^(?:latin[-_]?\d|iso8859|iso-8859|cp125\d|windows-125\d|ascii|us-ascii)")


def decode_bytes(data: bytes, declared: str | None, mail: ParsedMail | None = None, *,
                 partial: bool = False) -> str:
    """Decode without losing text: declared charset, then UTF-8, then cp1252, then latin-1.

    A declared single-byte charset whose bytes are valid, non-ASCII UTF-8 is taken as UTF-8:
    mislabelled UTF-8 is common, while latin-1 text that happens to be valid UTF-8 is not.
    ``partial``: ``data`` was cut at a byte limit, so a character split at its end is dropped
    instead of failing the charset (which would fall back to cp1252 and garble the text).
    """
    codec = _text_codec(declared)
    if declared and codec is None and mail is not None:
        mail.note("unknown-charset")
    candidates: list[str] = []
    if codec and _SINGLE_BYTE.match(codec) and not data.isascii():
        candidates.append("utf-8")
    if codec:
        candidates.append(codec)
    candidates += ["utf-8", "cp1252"]
    for name in candidates:
        try:
            text = codecs.getincrementaldecoder(name)().decode(data, final=not partial)
        except Exception:  # noqa: BLE001
            continue
        if mail is not None and codec and name != codec:
            mail.note("charset-mismatch")
        return text
    if mail is not None:
        mail.note("charset-fallback-latin1")
    return data.decode("latin-1")


def _part_payload(part: Message, mail: ParsedMail) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        mail.note("undecodable-part")
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _part_text(part: Message, mail: ParsedMail, limit: int = MAX_FULL_TEXT_CHARS) -> str:
    """The part's text, at most ``limit`` characters, decoded from at most MAX_PART_BYTES."""
    try:
        declared = part.get_param("charset")
        if isinstance(declared, tuple):  # RFC 2231 (charset, language, value)
            declared = declared[2]
        declared = str(declared) if declared else None
    except Exception:  # noqa: BLE001
        declared = None
    data = _part_payload(part, mail)
    cut = len(data) > MAX_PART_BYTES
    text = decode_bytes(data[:MAX_PART_BYTES] if cut else data, declared, mail, partial=cut)
    if cut or len(text) > limit:
        mail.note("body-truncated")
    return text[:limit]


def _safe(call, default):
    try:
        return call()
    except Exception:  # noqa: BLE001
        return default


def _is_attachment(part: Message) -> bool:
    disposition = (_safe(part.get_content_disposition, None) or "").lower()
    if disposition == "attachment":
        return True
    content_type = _safe(part.get_content_type, "text/plain")
    return content_type not in ("text/plain", "text/html")


def _filename(part: Message) -> str | None:
    """The part's file name: RFC 2231 by the parser, RFC 2047 words (Outlook, Gmail) by us."""
    filename = _safe(part.get_filename, None)
    if filename is None:
        return None
    filename = _unsurrogate(str(filename)[:MAX_HEADER_CHARS])
    if "=?" in filename:
        filename = _decode_raw(filename)
    return _clean_ws(filename) or None


def _attachment(part: Message, mail: ParsedMail) -> Attachment:
    content_type = _safe(part.get_content_type, "application/octet-stream")
    filename = _filename(part)
    if part.is_multipart() or content_type == "message/rfc822":
        payload = _safe(lambda: part.as_bytes(), b"")
        size = len(payload)
    else:
        size = _base64_size(part)
        if size is None:
            size = len(_part_payload(part, mail))
    return Attachment(filename=filename, content_type=content_type, size=size)


def _base64_size(part: Message) -> int | None:
    """Decoded size of a base64 part, counted without decoding it (a 20 MB scan would cost 20
    MB more memory just to be measured); None when the part is not base64 text."""
    encoding = str(_safe(lambda: part.get("content-transfer-encoding", ""), "")).strip().lower()
    payload = _safe(part.get_payload, None)
    if encoding != "base64" or not isinstance(payload, str):
        return None
    chars = len(payload) - sum(payload.count(c) for c in "\r\n \t")
    tail = payload.rstrip()
    padding = 2 if tail.endswith("==") else 1 if tail.endswith("=") else 0
    return max(chars * 3 // 4 - padding, 0)


@dataclass
class _Bodies:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    #: Characters of body text still allowed, shared by every _Bodies of one message.
    room: list[int] = field(default_factory=lambda: [MAX_FULL_TEXT_CHARS])

    def sub(self) -> _Bodies:
        """An empty collection sharing this one's room (for one branch of an alternative)."""
        return _Bodies(room=self.room)


def _collect(part: Message, mail: ParsedMail, bodies: _Bodies, depth: int = 0) -> None:
    """Walk the MIME tree: pick text/plain over text/html in alternatives, list the rest."""
    if depth > MAX_MIME_DEPTH + 1:  # the parser already stopped nesting at MAX_MIME_DEPTH
        mail.note("mime-too-deep")
        return
    content_type = _safe(part.get_content_type, "text/plain")
    if content_type == "message/rfc822" or (
        part.is_multipart() and not content_type.startswith("multipart/")
    ):
        mail.attachments.append(_attachment(part, mail))
        return
    if part.is_multipart():
        children = _safe(part.get_payload, []) or []
        if not isinstance(children, list):
            return
        if content_type == "multipart/alternative":
            _collect_alternative(children, mail, bodies, depth)
            return
        for child in children:
            if isinstance(child, Message):
                _collect(child, mail, bodies, depth + 1)
        return
    if _is_attachment(part):
        mail.attachments.append(_attachment(part, mail))
        return
    if _safe(part.get_filename, None):
        # Shown inline by mail clients, so it is read as body, but staff see it is a file.
        mail.attachments.append(_attachment(part, mail))
    if bodies.room[0] <= 0:
        mail.note("body-truncated")
        return
    text = _part_text(part, mail, bodies.room[0])
    bodies.room[0] -= len(text)
    if content_type == "text/html":
        bodies.html.append(text)
    else:
        bodies.plain.append(text)


def _collect_alternative(children: list, mail: ParsedMail, bodies: _Bodies, depth: int) -> None:
    """Use the plain-text version if it has text, else the richest HTML one."""
    results = []
    for child in children:
        if isinstance(child, Message):
            sub = bodies.sub()
            _collect(child, mail, sub, depth + 1)
            results.append(sub)
    with_plain = [r for r in results if any(t.strip() for t in r.plain)]
    chosen = with_plain[0] if with_plain else next((r for r in reversed(results) if r.html), None)
    if chosen is not None:
        bodies.plain += chosen.plain
        bodies.html += chosen.html


# --------------------------------------------------------------------------- HTML

_SKIP_TAGS = frozenset(
    ("script", "style", "head", "title", "noscript", "template", "svg", "object", "iframe",
     "embed", "applet", "meta", "link", "base", "xml", "math", "canvas", "audio", "video")
)
_BLOCK_TAGS = frozenset(
    ("p", "div", "li", "ul", "ol", "tr", "table", "tbody", "thead", "tfoot", "h1", "h2", "h3",
     "h4", "h5", "h6", "blockquote", "pre", "hr", "section", "article", "header", "footer",
     "address", "dl", "dt", "dd", "center", "form", "fieldset", "figure", "figcaption", "main",
     "nav", "aside", "caption", "body", "html")
)
# Quote containers skipped on their own (the person may have answered below them).
_QUOTE_CLASSES = frozenset(
    ("gmail_quote", "gmail_quote_container", "moz-cite-prefix", "yahoo_quoted",
     "protonmail_quote", "gmail_signature", "moz-signature")
)
# Markers after which everything is the earlier mail (Outlook, Hotmail, Outlook for Mac).
_CUT_AFTER_IDS = frozenset(
    ("divrplyfwdmsg", "appendonsend", "stopspelling", "mail-editor-reference-message-container",
     "x_divrplyfwdmsg", "x_appendonsend")
)
_OUTLOOK_HEADER_STYLE = re.compile(r"border-top:\s*solid\s*#(?:B5C4DF|E1E1E1)", re.IGNORECASE)
# Inline images (``src="data:..."``), dropped before the size cap: often megabytes in front of
# the text. Linear: each match starts at a distinct "src" and stops at the first quote/space.
_DATA_URI = re.compile(r"\bsrc\s*=\s*[\"']?data:[^\"'\s>]*", re.IGNORECASE)
# A start or end tag as the depth bound sees it. Bounded ({0,2000}, no "<" inside) so an
# unclosed "<div" costs one step, never a scan to the end of the input.
# Elements that never nest in practice: void elements, and those the HTML5 parser closes by
# itself when the next one starts (a page of unclosed <p>s or <td>s is flat, not deep). The
# regex skips them itself, so a flat page costs no Python call per tag.
_NON_NESTING = frozenset(
    ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr", "keygen", "p", "li", "dt", "dd", "option", "optgroup", "tr", "td",
     "th", "tbody", "thead", "tfoot", "colgroup", "rb", "rt", "rp", "rtc", "image")
)
_TAG = re.compile(
    r"<(/?)(?!(?:" + "|".join(sorted(_NON_NESTING)) + r")(?![A-Za-z0-9:-]))"
    r"([A-Za-z][A-Za-z0-9:-]{0,40})[^<>]{0,2000}>?",
    re.IGNORECASE,
)
_WS = re.compile(r"\s+")


def _classes(attrs: dict) -> list[str]:
    return str(attrs.get("class") or "").split()


def _is_quote(tag: str, attrs: dict) -> bool:
    if tag == "blockquote":
        return True
    if str(attrs.get("type") or "").lower() == "cite":
        return True
    if attrs.get("data-smartmail") == "gmail_signature":
        return True
    if str(attrs.get("id") or "").lower() == "signature":
        return True
    return any(c.lower() in _QUOTE_CLASSES for c in _classes(attrs))


def _is_cut_marker(tag: str, attrs: dict) -> bool:
    if str(attrs.get("id") or "").lower() in _CUT_AFTER_IDS:
        return True
    if "outlookmessageheader" in (c.lower() for c in _classes(attrs)):
        return True
    return tag == "div" and bool(_OUTLOOK_HEADER_STYLE.search(str(attrs.get("style") or "")))


# Block boundaries: a line break; a paragraph boundary: an empty line. Runs of them collapse, so
# nested <div><div> or </li><li> do not pile up blank lines.
_LINE, _PARAGRAPH = "\x00", "\x01"
_PARAGRAPH_TAGS = frozenset(("p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol",
                             "blockquote", "pre", "hr"))
_BOUNDARIES = re.compile(r"(?:[ \t]*[\x00\x01][ \t]*)+")


def _block_marker(tag: str, attrs: dict) -> str:
    if tag not in _BLOCK_TAGS:
        return ""
    if tag in _PARAGRAPH_TAGS and "MsoNormal" not in _classes(attrs):
        return _PARAGRAPH
    return _LINE


def _bound_html_depth(html: str, limit: int = MAX_HTML_DEPTH) -> tuple[str, bool]:
    """``html`` with start tags beyond ``limit`` open elements dropped (and their end tags).

    "Open" is counted per element name (start tags minus matching end tags), which over-counts
    what an HTML5 parser keeps open and never under-counts it: an end tag only closes an
    element of its own name here, while the parser may close more. Linear in the input.
    Returns the bounded HTML and whether anything was dropped.
    """
    if html.count("<") <= limit:
        return html, False
    open_count: dict[str, int] = {}
    dropped: dict[str, int] = {}
    depth = 0

    def visit(match: re.Match[str]) -> str:
        nonlocal depth
        name = match.group(2).lower()
        if name in _NON_NESTING:
            return match.group(0)
        if match.group(1):  # an end tag
            if dropped.get(name):
                dropped[name] -= 1
                return ""
            if open_count.get(name):
                open_count[name] -= 1
                depth -= 1
            return match.group(0)
        if depth >= limit:
            dropped[name] = dropped.get(name, 0) + 1
            return ""
        open_count[name] = open_count.get(name, 0) + 1
        depth += 1
        return match.group(0)

    bounded = _TAG.sub(visit, html)
    return bounded, bool(dropped)


def _prepare_html(html: str, mail: ParsedMail | None = None) -> str:
    """Sender HTML cut to the bounds, before any regex or parser works on all of it."""
    def note(code: str) -> None:
        if mail is not None:
            mail.note(code)

    if len(html) > MAX_HTML_SCAN_CHARS:
        note("html-truncated")
        html = html[:MAX_HTML_SCAN_CHARS]
    html = _DATA_URI.sub(" ", html)
    if len(html) > MAX_HTML_CHARS:
        note("html-truncated")
        html = html[:MAX_HTML_CHARS]
    html, dropped = _bound_html_depth(html)
    if dropped:
        note("html-too-deep")
    return html


def _element(node: LexborNode) -> tuple[str, dict]:
    """(tag name, attributes) of an element node; {} when lexbor cannot give them."""
    try:
        return node.tag or "", node.attributes
    except Exception:  # noqa: BLE001
        return node.tag or "", {}


def _render(root: LexborNode) -> tuple[str, str, bool]:
    """(full text, text with quoted mail cut, cut short) of the tree, as a reader sees it.

    One walk gives both texts. The tree is only read, never changed or rendered. Iterative,
    not recursive: mail with thousands of nested <div>s or <blockquote>s exists. A stack entry
    is a node to visit, or a string to emit once its subtree is done, with (inside <pre>,
    inside a quote). At most MAX_HTML_NODES nodes are visited; the third value says so.
    """
    full: list[str] = []
    cut: list[str] = []
    cut_done = False
    visited = 0
    stack: list[tuple[object, bool, bool]] = [(root, False, False)]
    while stack:
        node, in_pre, quoted = stack.pop()
        if not isinstance(node, str):
            visited += 1
            if visited > MAX_HTML_NODES:
                return _layout(full), _layout(cut), True
        if isinstance(node, str):
            full.append(node)
            if not quoted and not cut_done:
                cut.append(node)
            continue
        assert isinstance(node, LexborNode)
        tag, attrs = _element(node)
        if tag == "-text":
            text = (node.text_content or "").replace(_LINE, "").replace(_PARAGRAPH, "")
            text = text if in_pre else _WS.sub(" ", text)
            full.append(text)
            if not quoted and not cut_done:
                cut.append(text)
            continue
        if not tag or tag.startswith("-") or tag.startswith("!") or tag in _SKIP_TAGS:
            continue  # comments, doctypes, scripts, styles: never text
        if not quoted and not cut_done and _is_cut_marker(tag, attrs):
            cut_done = True
        quoted = quoted or _is_quote(tag, attrs)
        if tag == "br":
            stack.append(("\n", in_pre, quoted))
            continue
        marker = _block_marker(tag, attrs)
        closing = marker or (" " if tag in ("td", "th") else "")
        if marker:
            full.append(marker)
            if not quoted and not cut_done:
                cut.append(marker)
        if closing:
            stack.append((closing, in_pre, quoted))
        child_pre = in_pre or tag == "pre"
        children = list(node.iter(include_text=True))
        stack.extend((child, child_pre, quoted) for child in reversed(children))
    return _layout(full), _layout(cut), False


_HSPACE = re.compile(r"[ \t\u00a0]+")
_LINE_EDGE = re.compile(r"[^\S\n]*\n[^\S\n]*")
_BLANK_RUN = re.compile(r"\n{3,}")


def _layout(out: list[str]) -> str:
    """Block markers to line breaks, spaces tidied, lines stripped, at most one empty line in
    a row. Whole-text substitutions, not one per line: a flat page can have 100,000 lines."""
    text = _BOUNDARIES.sub(lambda m: "\n\n" if _PARAGRAPH in m.group() else "\n", "".join(out))
    text = _LINE_EDGE.sub("\n", _HSPACE.sub(" ", text))
    return _BLANK_RUN.sub("\n\n", text).strip()


def _html_texts(html: str, mail: ParsedMail | None = None) -> tuple[str, str]:
    """(full text, text with quote containers cut) from one parse of the bounded HTML."""
    html = _prepare_html(html, mail)
    try:
        root = LexborHTMLParser(html).root
    except Exception:  # noqa: BLE001
        if mail is not None:
            mail.note("unparsable-html")
        return "", ""
    if root is None:
        return "", ""
    full, cut, short = _render(root)
    if short and mail is not None:
        mail.note("html-truncated")
    return full, cut


def html_to_text(html: str, cut_quotes: bool = False) -> str:
    """Plain text of sender HTML (never rendered); with ``cut_quotes`` the quoted mail is cut.

    Safe to show: no controls, no invisible characters, no markup (see assistant.mail.safe).
    """
    full, cut = _html_texts(html)
    return safe_text(cut if cut_quotes else full)


_LOOKS_HTML = re.compile(r"^\s*(?:<!doctype html|<html|<\?xml|<(?:div|p|body|table|span)\b)", re.I)


# --------------------------------------------------------------------------- public


def _as_bytes(raw: object) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, (bytearray, memoryview)):
        return bytes(raw)
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    raise TypeError("raw mail must be bytes")


def _cap(text: str, limit: int, mail: ParsedMail, problem: str) -> str:
    if len(text) > limit:
        mail.note(problem)
        return text[:limit]
    return text


# --------------------------------------------------------------------------- bounded structure


@dataclass
class _Budget:
    """What one parse has used up, shared by every part of the message."""

    parts: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, code: str) -> None:
        if code not in self.notes:
            self.notes.append(code)


class _BoundedMessage(Message):
    """A compat32 Message that enforces the bounds while the standard feed parser builds it.

    The feed parser stores each header with ``set_raw``, attaches each new part to its parent
    with ``attach`` before reading the part's headers, and decides whether to descend into a
    part by its ``get_content_type``; those three are where the bounds live.
    """

    def __init__(self, policy=email.policy.compat32, budget: _Budget | None = None) -> None:
        super().__init__(policy)
        self.dsr_budget = budget if budget is not None else _Budget()
        self.dsr_depth = 0
        self.dsr_counts: dict[str, int] = {}

    def set_raw(self, name: str, value: str) -> None:
        """Store a header, capped: MAX_HEADERS per part, MAX_HEADER_CHARS per value."""
        key = name.strip().lower()
        seen = self.dsr_counts.get(key, 0)
        if key in _KEEP_HEADERS:
            full = seen >= MAX_SAME_HEADER
        else:
            full = len(self._headers) >= MAX_HEADERS
        if full:
            self.dsr_budget.note("too-many-headers")
            return
        if len(value) > MAX_HEADER_CHARS:
            self.dsr_budget.note("header-truncated")
            # References: the newest ids are at the end, and they are the ones a reply matches.
            value = (value[:1024] + " " + value[-(MAX_HEADER_CHARS - 1024):] if key == "references"
                     else value[:MAX_HEADER_CHARS])
        self.dsr_counts[key] = seen + 1
        super().set_raw(name, value)

    def attach(self, payload: Message) -> None:  # type: ignore[override]
        """Attach a part, counting it; past MAX_PARTS the part is parsed but not kept."""
        budget = self.dsr_budget
        if isinstance(payload, _BoundedMessage):
            payload.dsr_depth = self.dsr_depth + 1
            payload.dsr_budget = budget
        budget.parts += 1
        if budget.parts > MAX_PARTS:
            budget.note("too-many-parts")
            return
        super().attach(payload)

    def get_content_type(self) -> str:
        """Past MAX_MIME_DEPTH a multipart or message part is opaque: not descended into."""
        content_type = super().get_content_type()
        if self.dsr_depth >= MAX_MIME_DEPTH and content_type.split("/")[0] in ("multipart",
                                                                               "message"):
            self.dsr_budget.note("mime-too-deep")
            return "application/octet-stream"
        return content_type


def _chunks(data: bytes, budget: _Budget) -> Iterator[bytes]:
    """``data`` in parser-sized chunks, stopping at MAX_LINES lines or past MAX_PARTS parts."""
    lines = 0
    for start in range(0, len(data), _FEED_CHUNK):
        chunk = data[start:start + _FEED_CHUNK]
        count = chunk.count(b"\n")
        if lines + count > MAX_LINES:
            end = -1
            for _ in range(MAX_LINES - lines):
                end = chunk.find(b"\n", end + 1)
            budget.note("message-truncated")
            yield chunk[:end + 1]
            return
        lines += count
        yield chunk
        if budget.parts > MAX_PARTS:
            budget.note("message-truncated")
            return


def _bounded_parse(data: bytes, headers_only: bool = False) -> tuple[Message, list[str]]:
    """The MIME tree of ``data`` within the bounds, and the codes of the bounds that triggered.

    compat32, not email.policy.default: with compat32 no header is parsed while the tree is
    built (policy.default parses Content-Type on every access, which took 8 s for 20,000
    parameters); the few headers the core needs are parsed afterwards, capped.
    """
    budget = _Budget()
    factory = partial(_BoundedMessage, budget=budget)
    parser = BytesFeedParser(_factory=factory, policy=email.policy.compat32)
    if headers_only:
        parser._set_headersonly()  # noqa: SLF001  (what BytesParser(headersonly=True) calls)
        end = data.find(b"\n\n")
        end2 = data.find(b"\r\n\r\n")
        ends = [e for e in (end, end2) if e >= 0]
        data = data[:min(ends) + 4] if ends else data
    for chunk in _chunks(data, budget):
        parser.feed(chunk)
    return parser.close(), budget.notes


# --------------------------------------------------------------------------- body and output


def _body(msg: Message, mail: ParsedMail) -> None:
    bodies = _Bodies()
    _collect(msg, mail, bodies)
    plain = "\n\n".join(t for t in bodies.plain if t.strip())
    has_content_type = _raw_header(msg, "Content-Type") is not None
    if plain and not bodies.html and not has_content_type and _LOOKS_HTML.match(plain):
        mail.note("html-sniffed")
        bodies.html, plain = [plain], ""
    if plain:
        full = _cap(plain, MAX_FULL_TEXT_CHARS, mail, "body-truncated")
        # Invisible characters go before masking and quote cutting: a zero-width space inside
        # a personal number or a cue word must not hide it from them.
        full = mask_personal_numbers(safe_text(full, markup=False))
        new_source = full[:MAX_SCORING_CHARS]
        mail.full_text = full.strip()
        mail.text = strip_quotes_and_signature(new_source)
        return
    html = "\n".join(h for h in bodies.html if h.strip())
    if not html:
        return
    mail.html_only = True
    full, cut = _html_texts(html, mail)
    full = _cap(safe_text(full, markup=False), MAX_FULL_TEXT_CHARS, mail, "body-truncated")
    full = mask_personal_numbers(full)
    cut = mask_personal_numbers(safe_text(cut[:MAX_SCORING_CHARS], markup=False))
    mail.full_text = full
    new = strip_quotes_and_signature(cut) if cut.strip() else ""
    mail.text = new or strip_quotes_and_signature(full[:MAX_SCORING_CHARS])


def _make_safe(mail: ParsedMail) -> None:
    """Every text field through assistant.mail.safe, capped; the last step of parse_mail."""
    def addresses(values: Iterable[str]) -> list[str]:
        return [a for a in (safe_line(v, MAX_ADDRESS_CHARS) for v in values) if a]

    mail.subject = mask_personal_numbers(safe_line(mail.subject, MAX_SUBJECT_CHARS))
    # A display name, a Message-ID or a file name can carry a personal number as well as a
    # body can ("Kari 150385 12345", "skattemelding_15038512345.pdf"). Addresses are kept: they
    # are where the answer goes.
    mail.from_name = mask_personal_numbers(safe_line(mail.from_name, MAX_NAME_CHARS))
    mail.from_addr = safe_line(mail.from_addr, MAX_ADDRESS_CHARS)
    mail.to, mail.cc = addresses(mail.to), addresses(mail.cc)
    mail.reply_to = addresses(mail.reply_to)
    if mail.return_path is not None:
        mail.return_path = safe_line(mail.return_path, MAX_ADDRESS_CHARS)
    mail.message_id = mask_personal_numbers(safe_id(mail.message_id))
    mail.in_reply_to = mask_personal_numbers(safe_id(mail.in_reply_to))
    mail.references = [mask_personal_numbers(i) for i in map(safe_id, mail.references) if i]
    for attachment in mail.attachments:
        name = safe_line(attachment.filename, MAX_FILENAME_CHARS)
        attachment.filename = mask_personal_numbers(name) if name else None
        attachment.content_type = safe_line(attachment.content_type, 200)
    mail.text, mail.full_text = safe_text(mail.text), safe_text(mail.full_text)


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes; never raises, records what went wrong in ``problems``.

    Every field is bounded (see the MAX_* constants) and safe to show (assistant.mail.safe).
    """
    mail = ParsedMail()
    try:
        data = _as_bytes(raw)
    except Exception:  # noqa: BLE001
        mail.note("not-bytes")
        return mail
    if not data or data.isspace():
        mail.note("empty-message")
        return mail
    try:
        msg, bounds = _bounded_parse(data)
    except Exception:  # noqa: BLE001
        mail.note("unparsable-message")
        return mail
    for step in (_read_headers, _body):
        try:
            step(msg, mail)
        except Exception as exc:  # noqa: BLE001
            mail.note(f"{step.__name__.strip('_')}-failed:{type(exc).__name__}")
    try:
        mail.auto = auto_reason(msg, mail.from_addr, mail.subject)
    except Exception as exc:  # noqa: BLE001
        mail.note(f"auto-failed:{type(exc).__name__}")
    _note_defects(msg, mail)
    for code in bounds:
        mail.note(code)
    try:
        _make_safe(mail)
    except Exception as exc:  # noqa: BLE001
        mail.note(f"safe-failed:{type(exc).__name__}")
        mail.text = mail.full_text = ""
    if not mail.full_text:
        mail.note("no-body")
    return mail


def _note_defects(msg: Message, mail: ParsedMail) -> None:
    """MIME defects by class name only: useful to an operator, free of personal data."""
    try:
        parts: Iterable[Message] = msg.walk()
        for part in parts:
            for defect in getattr(part, "defects", []) or []:
                mail.note(f"defect:{type(defect).__name__}")
    except Exception:  # noqa: BLE001
        mail.note("defects-unreadable")


def receipt_time_from_headers(msg_or_raw: Message | bytes | str) -> datetime | None:
    """When the message reached its first server here: the topmost Received date, else Date.

    Used by ``dsr import``, where the time of import says nothing about when the request
    arrived. A topmost Received without a usable date falls through to the next one. Only
    the header block is parsed, within the same bounds as parse_mail.
    """
    try:
        if isinstance(msg_or_raw, Message):
            msg = msg_or_raw
        else:
            msg, _ = _bounded_parse(_as_bytes(msg_or_raw), headers_only=True)
        received = [v for k, v in msg.raw_items() if k.lower() == "received"]
    except Exception:  # noqa: BLE001
        return None
    for value in received[:MAX_SAME_HEADER]:
        text = str(value)[:MAX_HEADER_CHARS]
        if ";" in text:
            when = _parse_date(text.rsplit(";", 1)[1])
            if when is not None:
                return when
    try:
        return _parse_date(_raw_header(msg, "Date"))
    except Exception:  # noqa: BLE001
        return None

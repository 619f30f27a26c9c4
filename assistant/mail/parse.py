"""Raw email bytes to clean, masked text for the classifier, plus the headers the core needs.

Mail in a privacy inbox comes from every client and every decade: wrong charsets, broken MIME,
HTML-only bodies, 5 MB scans attached. Intake must never lose a message because the parser
choked, so :func:`parse_mail` never raises: whatever it cannot read becomes a short entry in
``ParsedMail.problems`` (no personal data in it) and the rest is still returned.

Sender HTML is never rendered: BeautifulSoup only walks it to pull text out (django-helpdesk's
CVE-2021-3945 came from serving sender HTML to staff browsers).
"""

from __future__ import annotations

import codecs
import email
import email.policy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from bs4 import BeautifulSoup, NavigableString, Tag

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
#: HTML handed to the HTML parser (characters, after dropping style/script/comments). The
#: pure-Python parser costs about 1 s per MB; markup is often ten times the text it carries.
MAX_HTML_CHARS = 200_000


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
    """The header's raw value, bypassing the policy's parser (which may be what failed)."""
    try:
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                return str(value)
    except Exception:  # noqa: BLE001
        return None
    return None


def _decode_raw(value: str) -> str:
    """RFC 2047 decoding that tolerates unknown charsets."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001
        return value


def _clean_ws(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


_SURROGATE = re.compile("[\ud800-\udfff]")


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


def _header_text(msg: Message, name: str, mail: ParsedMail) -> str:
    """A header as text; a header that fails to parse gives "" and a problem."""
    raw = _raw_header(msg, name)
    try:
        value = msg.get(name)
        text = "" if value is None else _clean_ws(str(value))
        if raw is None or not _SURROGATE.search(raw) or not re.search("[\ufffd\ud800-\udfff]", text):
            return text
        # Undecodable 8-bit bytes (e.g. latin-1): the policy gave U+FFFD; decode them ourselves.
        mail.note(f"8bit-header:{name.lower()}")
        return _clean_ws(_decode_raw(_unsurrogate(raw)))
    except Exception:  # noqa: BLE001
        mail.note(f"bad-header:{name.lower()}")
    if raw is None:
        return ""
    try:
        return _clean_ws(_decode_raw(raw))
    except Exception:  # noqa: BLE001
        return ""


def _address_pairs(msg: Message, name: str, mail: ParsedMail) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs from every header called ``name``."""
    pairs: list[tuple[str, str]] = []
    try:
        headers = msg.get_all(name) or []
        for header in headers:
            for address in getattr(header, "addresses", ()):
                pairs.append((str(address.display_name or ""), str(address.addr_spec or "")))
    except Exception:  # noqa: BLE001
        mail.note(f"bad-header:{name.lower()}")
        pairs = []
        try:
            raws = [_decode_raw(v) for k, v in msg.raw_items() if k.lower() == name.lower()]
            pairs = [(n, a) for n, a in getaddresses(raws)]
        except Exception:  # noqa: BLE001
            return []
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


def _aware(value: datetime | None) -> datetime | None:
    """Naive datetimes ("-0000" zones) are UTC by RFC 5322; the core wants aware ones."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    value = re.sub(r"\([^()]*\)", " ", value)
    value = _clean_ws(value)
    try:
        return _aware(parsedate_to_datetime(value))
    except Exception:  # noqa: BLE001
        return None


def _read_headers(msg: Message, mail: ParsedMail) -> None:
    mail.message_id = (_msg_ids(_header_text(msg, "Message-ID", mail)) or [""])[0]
    mail.subject = mask_personal_numbers(_header_text(msg, "Subject", mail))
    senders = _address_pairs(msg, "From", mail)
    if senders:
        mail.from_name, mail.from_addr = senders[0]
    else:
        mail.note("missing-from")
    mail.to = [a for _, a in _address_pairs(msg, "To", mail)]
    mail.cc = [a for _, a in _address_pairs(msg, "Cc", mail)]
    mail.reply_to = [a for _, a in _address_pairs(msg, "Reply-To", mail)]
    mail.return_path = _return_path(msg)
    mail.in_reply_to = (_msg_ids(_header_text(msg, "In-Reply-To", mail)) or [""])[0]
    mail.references = _msg_ids(_header_text(msg, "References", mail))
    try:
        date_header = msg.get("Date")
        mail.date = _aware(getattr(date_header, "datetime", None)) if date_header else None
    except Exception:  # noqa: BLE001
        mail.note("bad-header:date")
    if mail.date is None:
        mail.date = _parse_date(_raw_header(msg, "Date"))
        if _raw_header(msg, "Date") is not None and mail.date is None:
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


def decode_bytes(data: bytes, declared: str | None, mail: ParsedMail | None = None) -> str:
    """Decode without losing text: declared charset, then UTF-8, then cp1252, then latin-1.

    A declared single-byte charset whose bytes are valid, non-ASCII UTF-8 is taken as UTF-8:
    mislabelled UTF-8 is common, while latin-1 text that happens to be valid UTF-8 is not.
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
            text = data.decode(name)
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


def _part_text(part: Message, mail: ParsedMail) -> str:
    try:
        declared = part.get_param("charset")
        if isinstance(declared, tuple):  # RFC 2231 (charset, language, value)
            declared = declared[2]
        declared = str(declared) if declared else None
    except Exception:  # noqa: BLE001
        declared = None
    return decode_bytes(_part_payload(part, mail), declared, mail)


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


def _attachment(part: Message, mail: ParsedMail) -> Attachment:
    content_type = _safe(part.get_content_type, "application/octet-stream")
    filename = _safe(part.get_filename, None)
    if filename is not None:
        filename = _clean_ws(_unsurrogate(str(filename))) or None
    if part.is_multipart() or content_type == "message/rfc822":
        payload = _safe(lambda: part.as_bytes(), b"")
        size = len(payload)
    else:
        size = len(_part_payload(part, mail))
    return Attachment(filename=filename, content_type=content_type, size=size)


@dataclass
class _Bodies:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)


def _collect(part: Message, mail: ParsedMail, bodies: _Bodies, depth: int = 0) -> None:
    """Walk the MIME tree: pick text/plain over text/html in alternatives, list the rest."""
    if depth > 30:
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
    text = _part_text(part, mail)
    if content_type == "text/html":
        bodies.html.append(text)
    else:
        bodies.plain.append(text)


def _collect_alternative(children: list, mail: ParsedMail, bodies: _Bodies, depth: int) -> None:
    """Use the plain-text version if it has text, else the richest HTML one."""
    results = []
    for child in children:
        if isinstance(child, Message):
            sub = _Bodies()
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
# Removed before parsing: invisible, often huge (Outlook style sheets, inline images).
_PRESTRIP = re.compile(
    r"<(script|style|head|title|svg)\b[^>]*>.*?</\1\s*>|<!--.*?-->|\bsrc\s*=\s*[\"']?data:[^\"'\s>]*",
    re.IGNORECASE | re.DOTALL,
)
_WS = re.compile(r"\s+")


def _classes(tag: Tag) -> list[str]:
    value = tag.attrs.get("class") or []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def _is_quote(tag: Tag) -> bool:
    if tag.name == "blockquote":
        return True
    if str(tag.attrs.get("type", "")).lower() == "cite":
        return True
    if tag.attrs.get("data-smartmail") == "gmail_signature":
        return True
    if str(tag.attrs.get("id", "")).lower() == "signature":
        return True
    return any(c.lower() in _QUOTE_CLASSES for c in _classes(tag))


def _is_cut_marker(tag: Tag) -> bool:
    if str(tag.attrs.get("id", "")).lower() in _CUT_AFTER_IDS:
        return True
    if "outlookmessageheader" in (c.lower() for c in _classes(tag)):
        return True
    return tag.name == "div" and bool(_OUTLOOK_HEADER_STYLE.search(str(tag.attrs.get("style", ""))))


# Block boundaries: a line break; a paragraph boundary: an empty line. Runs of them collapse, so
# nested <div><div> or </li><li> do not pile up blank lines.
_LINE, _PARAGRAPH = "\x00", "\x01"
_PARAGRAPH_TAGS = frozenset(("p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol",
                             "blockquote", "pre", "hr"))
_BOUNDARIES = re.compile(r"(?:[ \t]*[\x00\x01][ \t]*)+")


def _block_marker(tag: Tag) -> str:
    if tag.name not in _BLOCK_TAGS:
        return ""
    if tag.name in _PARAGRAPH_TAGS and "MsoNormal" not in _classes(tag):
        return _PARAGRAPH
    return _LINE


def _render(root: Tag, cut_quotes: bool) -> str:
    """Text of the tree as a reader sees it; the tree is only read, never changed or rendered."""
    out: list[str] = []
    # Iterative, not recursive: mail with thousands of nested <div>s or <blockquote>s exists.
    # A stack entry is a node to visit, or a string to emit once its subtree is done.
    stack: list[tuple[object, bool]] = [(child, False) for child in reversed(root.contents)]
    while stack:
        node, in_pre = stack.pop()
        if isinstance(node, str) and not isinstance(node, NavigableString):
            out.append(node)
            continue
        if isinstance(node, NavigableString):
            if type(node) is NavigableString:  # not comments, doctypes, CDATA
                out.append(str(node) if in_pre else _WS.sub(" ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if name in _SKIP_TAGS:
            continue
        if cut_quotes:
            if _is_cut_marker(node):
                break
            if _is_quote(node):
                continue
        if name == "br":
            out.append("\n")
            continue
        marker = _block_marker(node)
        closing = marker or (" " if name in ("td", "th") else "")
        if marker:
            out.append(marker)
        if closing:
            stack.append((closing, in_pre))
        child_pre = in_pre or name == "pre"
        stack.extend((child, child_pre) for child in reversed(node.contents))
    text = _BOUNDARIES.sub(lambda m: "\n\n" if _PARAGRAPH in m.group() else "\n", "".join(out))
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _parse_html(html: str, mail: ParsedMail | None = None) -> BeautifulSoup:
    if len(html) > 4 * MAX_HTML_CHARS:
        if mail is not None:
            mail.note("html-truncated")
        html = html[: 4 * MAX_HTML_CHARS]
    html = _PRESTRIP.sub(" ", html)
    if len(html) > MAX_HTML_CHARS:
        if mail is not None:
            mail.note("html-truncated")
        html = html[:MAX_HTML_CHARS]
    return BeautifulSoup(html, "html.parser")


def html_to_text(html: str, cut_quotes: bool = False) -> str:
    """Plain text of sender HTML (never rendered); with ``cut_quotes`` the quoted mail is cut."""
    return _render(_parse_html(html), cut_quotes)


def _html_texts(html: str, mail: ParsedMail) -> tuple[str, str]:
    """(full text, text with quote containers cut) from one parse of the HTML."""
    soup = _parse_html(html, mail)
    return _render(soup, False), _render(soup, True)


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


def _body(msg: Message, mail: ParsedMail) -> None:
    bodies = _Bodies()
    _collect(msg, mail, bodies)
    plain = "\n\n".join(t for t in bodies.plain if t.strip())
    has_content_type = _raw_header(msg, "Content-Type") is not None
    if plain and not bodies.html and not has_content_type and _LOOKS_HTML.match(plain):
        mail.note("html-sniffed")
        bodies.html, plain = [plain], ""
    if plain:
        full = _cap(plain.replace("\r\n", "\n"), MAX_FULL_TEXT_CHARS, mail, "body-truncated")
        full = mask_personal_numbers(full)
        new_source = full[:MAX_SCORING_CHARS]
        mail.full_text = full.strip()
        mail.text = strip_quotes_and_signature(new_source)
        return
    html = "\n".join(h for h in bodies.html if h.strip())
    if not html:
        return
    mail.html_only = True
    full, cut = _html_texts(html, mail)
    full = mask_personal_numbers(_cap(full, MAX_FULL_TEXT_CHARS, mail, "body-truncated"))
    cut = mask_personal_numbers(cut[:MAX_SCORING_CHARS])
    mail.full_text = full
    new = strip_quotes_and_signature(cut) if cut.strip() else ""
    mail.text = new or strip_quotes_and_signature(full[:MAX_SCORING_CHARS])


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes; never raises, records what went wrong in ``problems``."""
    mail = ParsedMail()
    try:
        data = _as_bytes(raw)
    except Exception:  # noqa: BLE001
        mail.note("not-bytes")
        return mail
    if not data.strip():
        mail.note("empty-message")
        return mail
    try:
        msg = email.message_from_bytes(data, policy=email.policy.default)
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
    arrived. A topmost Received without a usable date falls through to the next one.
    """
    try:
        if isinstance(msg_or_raw, Message):
            msg = msg_or_raw
        else:
            msg = email.message_from_bytes(_as_bytes(msg_or_raw), policy=email.policy.default)
        received = [v for k, v in msg.raw_items() if k.lower() == "received"]
    except Exception:  # noqa: BLE001
        return None
    for value in received:
        text = str(value)
        if ";" in text:
            when = _parse_date(text.rsplit(";", 1)[1])
            if when is not None:
                return when
    try:
        return _parse_date(_raw_header(msg, "Date"))
    except Exception:  # noqa: BLE001
        return None

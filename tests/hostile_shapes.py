"""Hostile mail shapes: each builds raw bytes (well inside the 25 MB SMTP limit) that once
stalled, bloated or blinded the parser. Shared by tests/test_mail_hostile.py (which asserts on
the result) and bench/hostile_mail.py (which times them); never timed in tests."""

from __future__ import annotations

import base64
from collections.abc import Callable

FROM = "Ola Nordmann <ola@example.no>"
SUBJECT = "Innsyn"
REQUEST = "Jeg ber om innsyn i alle opplysninger dere har om meg."


def message(body: bytes | str, *, content_type: str = "text/plain; charset=utf-8",
            headers: str = "", subject: str = SUBJECT, extra_after: str = "",
            cte: str = "8bit") -> bytes:
    """A message with the usual outer headers; ``headers`` go before them, ``extra_after`` after."""
    head = (
        f"{headers}From: {FROM}\r\nTo: kundesenter@branninfo.no\r\nSubject: {subject}\r\n"
        f"Message-ID: <hostile-1@example.no>\r\nDate: Tue, 3 Nov 2026 10:12:00 +0100\r\n"
        f"{extra_after}MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    )
    data = body.encode("utf-8") if isinstance(body, str) else body
    return head.encode("utf-8") + data


def html(markup: str) -> bytes:
    return message(f"<p>{REQUEST}</p>" + markup, content_type="text/html; charset=utf-8")


def nested_multipart(levels: int) -> bytes:
    """``levels`` multiparts inside each other; the request is in the innermost text part."""
    body = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{REQUEST}\r\n"
    for level in range(levels, 0, -1):
        body = (f"Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n"
                f"--b{level}\r\n{body}--b{level}--\r\n")
    head, _, rest = body.partition("\r\n\r\n")
    return message(rest, content_type=head.split(": ", 1)[1])


def nested_rfc822(levels: int) -> bytes:
    """A message/rfc822 forwarded inside another, ``levels`` deep, then the request as text."""
    inner = "From: x@example.no\r\nSubject: inner\r\n\r\nINNER-TEXT\r\n"
    for _ in range(levels):
        inner = ("From: x@example.no\r\nSubject: inner\r\nContent-Type: message/rfc822\r\n\r\n"
                 + inner)
    body = (f"--o\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{REQUEST}\r\n"
            f"--o\r\nContent-Type: message/rfc822\r\n\r\n{inner}--o--\r\n")
    return message(body, content_type='multipart/mixed; boundary="o"')


def many_parts(count: int) -> bytes:
    parts = "".join(f"--p\r\nContent-Type: text/plain\r\n\r\nx{i}\r\n" for i in range(count))
    body = f"--p\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{REQUEST}\r\n{parts}--p--\r\n"
    return message(body, content_type='multipart/mixed; boundary="p"')


def attachment(size: int) -> bytes:
    """The request and a base64 attachment of ``size`` bytes (a scan, the usual big mail)."""
    data = base64.encodebytes(bytes(range(256)) * (size // 256)).decode()
    body = (f"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{REQUEST}\r\n"
            f"--a\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename=\"scan.pdf\"\r\n\r\n{data}--a--\r\n")
    return message(body, content_type='multipart/mixed; boundary="a"')


def _ew_subject(words: int) -> str:
    word = "=?utf-8?b?" + base64.b64encode("æø".encode()).decode() + "?="
    return " ".join([word] * words)


SHAPES: dict[str, Callable[[], bytes]] = {
    "script-unclosed-20k": lambda: html("<script>" * 20_000),
    "script-unclosed-300k": lambda: html("<script>" * 300_000),
    "style-unclosed-300k": lambda: html("<style>" * 300_000),
    "comment-unclosed-300k": lambda: html("<!--" * 300_000),
    "nested-b-100k": lambda: html("<b>" * 100_000 + "DYP-TEKST"),
    "nested-div-10k": lambda: html("<div>" * 10_000 + "DYP-TEKST"),
    "nested-div-100k": lambda: html("<div>" * 100_000 + "DYP-TEKST"),
    "misnested-b-p-100k": lambda: html("<b>x</p>" * 100_000),
    "td-cells-50k": lambda: html("<table><tr>" + "<td>c</td>" * 50_000 + "</tr></table>"),
    "p-flat-125k": lambda: html("<p>x" * 125_000),
    "entity-markup": lambda: html("<p>&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x "
                                  "onerror=alert(2)&gt; &amp;lt;b&amp;gt;</p>"),
    "subject-ew-16k": lambda: message(REQUEST, subject=_ew_subject(16_000)),
    "subject-ew-100k": lambda: message(REQUEST, subject=_ew_subject(100_000)),
    "content-type-params-20k": lambda: message(
        REQUEST, content_type="text/plain; charset=utf-8" + "".join(
            f"; p{i}=\"v{i}\"" for i in range(20_000))),
    "references-600k": lambda: message(REQUEST, extra_after="References: " + " ".join(
        f"<ref{i}@example.no>" for i in range(33_000)) + "\r\n"),
    "to-20k": lambda: message(REQUEST, extra_after="Cc: " + ", ".join(
        f"user{i}@example.no" for i in range(20_000)) + "\r\n"),
    "header-line-1mb": lambda: message(REQUEST, headers="X-Junk: " + "a" * 1_000_000 + "\r\n"),
    "received-10k": lambda: message(REQUEST, headers="".join(
        f"Received: from mx{i}.example.no by mx.example.no; Tue, 3 Nov 2026 10:12:00 +0100\r\n"
        for i in range(10_000))),
    "mime-nested-1000": lambda: nested_multipart(1_000),
    "rfc822-nested-1000": lambda: nested_rfc822(1_000),
    "parts-50k": lambda: many_parts(50_000),
    "body-5mb-one-line": lambda: message(REQUEST + " " + "fyll" * 1_250_000),
    "body-5m-blank-lines": lambda: message(REQUEST + "\n" * 5_000_000),
    "body-short-lines-10mb": lambda: message(REQUEST + "\nx" * 5_000_000),
    "attachment-18mb": lambda: attachment(18_000_000),
    "digits-11-80k": lambda: message(REQUEST + " " + " ".join(["24068812345"] * 80_000)),
    "base64-garbage": lambda: message(
        base64.b64encode(REQUEST.encode()) + b"!!*&%$\xff\xfe====" * 1000 + b"QUJD\r\n" * 100,
        cte="base64"),
    "bidi-zero-width-nul": lambda: message(
        "Jeg ber om\x00 in\u200bnsyn\u202e.\x1b[31m", headers="",
        extra_after="Reply-To: \"Ola \u202eon.elpmaxe@alo\u202c\" <ola@example.no>\r\n",
        subject="Inn\u200bsyn \u2066\u202eolleh\u2069 \x00"),
}


def raw_from_name(name: str) -> bytes:
    """The raw bytes of one shape."""
    return SHAPES[name]()

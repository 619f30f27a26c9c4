"""The new text of a reply: earlier mail quoted below it and the signature cut off.

A follow-up such as "Ja, slett alt" sits on top of the whole earlier thread, including our own
acknowledgement that names every right. Classifying the whole body would find every intent in
the quote, so only the text the person just wrote is scored.

mail-parser-reply does the splitting. It has no Norwegian entry, and its da/sv/en entries are
too eager for request letters (a line starting "Tak" ends the mail, so does "- punkt" in a
list, and any two lines "Til:"/"Fra:" count as a quoted header). We therefore register one entry
of our own, built on the Danish one, that knows Norwegian (bokmål and nynorsk), Danish, Swedish
and English clients, and asks for a clock time or an e-mail address before it believes a line
is a quote header. The library lets a caller add a language only by adding a key to its
``MAIL_LANGUAGES`` table; we add our own key and leave its entries alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.constants import QUOTED_MATCH_INCLUDE as Q

#: Our key in mail-parser-reply's language table (a name upstream will not use).
LANGUAGE_KEY = "dsr-nordic"

# A clock time as mail clients print it: "10:12", "kl. 10.12"; "03.11.2026" is a date, not a
# time, hence the look-ahead.
_TIME = r"(?:\d{1,2}:\d{2}|kl\.?\s?\d{1,2}[.:]\d{2})(?![.\d])"
_VERB = r"(?:skrev|skreiv|wrote|kirjoitti|schrieb)"
_EMAIL_IN_BRACKETS = r"<[^<>\s@]+@[^<>\s]+>"
# First words of an attribution line that wraps onto a second line.
_OPENER = (
    r"(?:On|Den|Am|P\u00e5|Le|El|Op|Il|\d|man|tir|ons|tor|fre|l\u00f8r|s\u00f8n|m\u00e5n|tis|"
    r"l\u00f6r|s\u00f6n|mon|tue|wed|thu|fri|sat|sun)"
)

# Attribution lines are short; bounded gaps keep every pattern linear on a 100 KB one-line body.
_GAP = r"[^\n]{0,200}?"
_WROTE_HEADERS = [
    # One line, clock time before the verb: Gmail, Apple Mail, Thunderbird in nb/nn/da/sv/en.
    rf"^({Q}{_GAP}{_TIME}{_GAP}\b{_VERB}\b[^\n]{{0,160}}:)[ \t]*$",
    # One line with "<address>" and the verb: "Ola Nordmann <ola@x.no> skrev:".
    rf"^({Q}(?={_GAP}{_EMAIL_IN_BRACKETS}){_GAP}\b{_VERB}\b[^\n]{{0,160}}:)[ \t]*$",
    # Wrapped attribution, verb on the second line: "On ... 10:12 AM Ola <\nola@x.no> wrote:".
    rf"^({Q}{_OPENER}{_GAP}{_TIME}[^\n]{{0,200}}\n{Q}[^\n]{{0,120}}?\b{_VERB}\b[^\n]{{0,120}}:)[ \t]*$",
    # Wrapped attribution, address on the second line: "... kl. 10:12 skrev Ola <\nola@x.no>:".
    rf"^({Q}{_OPENER}{_GAP}{_TIME}{_GAP}\b{_VERB}\b[^\n]{{0,200}}\n{Q}[^\n:]{{0,120}}@[^\n]{{0,120}}:)[ \t]*$",
]

_FROM_WORDS = ("Fra", "From", "Fr\u00e5n", "Von")
_DATE_WORDS = ("Sendt", "Sent", "Skickat", "Dato", "Date", "Datum", "Gesendet")
_OTHER_WORDS = (
    "Til", "To", "Till", "Emne", "Subject", "\u00c4mne", "Betreff", "An", "Cc", "Kopi", "Kopia",
    "Bcc", "Blindkopi", "Svar til", "Reply-To", "Vedlegg", "Vedh\u00e6ftet", "Attachments",
    "Bilagor", "Importance", "Prioritet", "Organisasjon", "Organization",
)
_FROM_KEYS = "(?:" + "|".join(map(re.escape, _FROM_WORDS)) + ")"
_DATE_KEYS = "(?:" + "|".join(map(re.escape, _DATE_WORDS)) + ")"
_OTHER_KEYS = "(?:" + "|".join(map(re.escape, _OTHER_WORDS)) + ")"
# A line whose first colon stands further in than this (quote marks, stars and spaces aside)
# cannot be a header line of an Outlook block.
_LONGEST_KEY = max(map(len, _FROM_WORDS + _DATE_WORDS + _OTHER_WORDS))
_HEADER_LINE = rf"{Q}[* ]*(?:{_FROM_KEYS}|{_DATE_KEYS}|{_OTHER_KEYS})[ *]*:[^\n]*"

# Outlook's "Fra:/Sendt:/Til:/Emne:" block (and its en/sv/da twins). It must hold a sender line
# and a date line with a clock time among its first lines: a letter that opens with
# "Til: Firma AS / Fra: Ola / Emne: Innsyn" is the request itself, not a quote.
_OUTLOOK_BLOCK = (
    rf"^((?=(?:{_HEADER_LINE}\n){{0,6}}{Q}[* ]*{_FROM_KEYS}[ *]*:)"
    rf"(?=(?:{_HEADER_LINE}\n){{0,6}}{Q}[* ]*{_DATE_KEYS}[ *]*:[^\n]{{0,100}}?\d{{1,2}}[:.]\d{{2}}(?![.\d]))"
    rf"{_HEADER_LINE}(?:\n{_HEADER_LINE})+)"
)

_SEPARATOR_WORDS = (
    r"(?:Original Message|Opprinnelig melding|Opprinneleg melding|Opprinnelig e-post|"
    r"Oprindelig meddelelse|Ursprungligt meddelande|Originalmeldung|Urspr\u00fcngliche Nachricht|"
    r"Forwarded message|Forwarded Message|Videresendt melding|Videresendt e-post|"
    r"Videresendt meddelelse|Vidarebefordrat meddelande|Weitergeleitete Nachricht)"
)
_SEPARATORS = [
    # "-----Opprinnelig melding-----", "---------- Forwarded message ---------".
    rf"^({Q}-{{2,}}[ \t]*{_SEPARATOR_WORDS}[ \t]*-{{2,}})[ \t]*$",
    # Apple Mail and others: "Begin forwarded message:", "Start på videresendt melding:".
    rf"^({Q}(?:Begin forwarded message|Start of forwarded message|"
    r"Start p\u00e5 videresendt (?:melding|e-post)|Videresendt melding|Videresendt e-post|"
    r"B\u00f6rjan p\u00e5 vidarebefordrat (?:brev|meddelande)|Vidarebefordrat brev):)[ \t]*$",
]

# A closing line, optionally followed on the same line by a short name ("Mvh Ola Nordmann").
_CLOSING_WORDS = (
    "Med vennlig hilsen", "Med vennleg helsing", "Vennlig hilsen", "Vennleg helsing",
    "Beste hilsener", "Beste hilsen", "Vennlige hilsener", "Hilsen", "Helsing", "Mvh", "Mvh.",
    "Med venlig hilsen", "Venlig hilsen", "Bedste hilsner",
    "Med v\u00e4nliga h\u00e4lsningar", "Med v\u00e4nlig h\u00e4lsning", "V\u00e4nliga h\u00e4lsningar",
    "V\u00e4nlig h\u00e4lsning", "H\u00e4lsningar", "B\u00e4sta h\u00e4lsningar",
    "Best regards", "Kind regards", "Warm regards", "Regards", "Best wishes", "Yours sincerely",
    "Sincerely", "Yours faithfully", "Yours truly", "Cheers",
)
# A bare thank-you line just before the name, never a sentence that goes on.
_THANKS_WORDS = (
    "Takk", "Tusen takk", "Takk p\u00e5 forh\u00e5nd", "Tack", "Tak", "Thanks", "Thank you",
    "Many thanks", "Best",
)
_NAME_TAIL = r"[ \t]*[,.!:\u2013-]?[ \t]*(?:[^\W\d_][\w.'\u2019-]*[ \t]*){0,4}$"
_SIGNATURES = [
    rf"(?:{'|'.join(map(re.escape, _CLOSING_WORDS))})\b{_NAME_TAIL}",
    rf"(?:{'|'.join(map(re.escape, _THANKS_WORDS))})[ \t]*[,.!]*[ \t]*$",
]

_SENT_FROM_WORDS = (
    "Sendt fra min", "Sent from my", "Skickat fr\u00e5n min", "Sendt fra Outlook", "Sent from Outlook",
    "Get Outlook for", "Hent Outlook for", "Skaff Outlook for", "Sendt fra Mail for",
    "Sent from Mail for", "Sendt fra E-post for", "Sendt fra Samsung", "Sent from Samsung",
    "Sendt fra Yahoo", "Sent from Yahoo",
)
_SENT_FROM = "|".join(map(re.escape, _SENT_FROM_WORDS))

_DISCLAIMERS = [
    "CAUTION:",
    "Disclaimer:",
    "CONFIDENTIALITY:",
    "Konfidensialitet:",
    "Konfidensielt:",
]


def _register_language() -> None:
    """Add our entry to mail-parser-reply's table (idempotent; keeps the Danish base keys)."""
    entry = dict(MAIL_LANGUAGES["da"])
    entry.update(
        {
            "wrote_header": _WROTE_HEADERS + _SEPARATORS,
            "from_header": _OUTLOOK_BLOCK,
            "signatures": _SIGNATURES,
            "sent_from": _SENT_FROM,
            "disclaimers": _DISCLAIMERS,
        }
    )
    MAIL_LANGUAGES[LANGUAGE_KEY] = entry


_register_language()

_RULE_LINE = re.compile(r"^[ \t]*[_=*-]{3,}[ \t]*$")


_DEEP_QUOTE = re.compile(r"^(?:> ?){8,}", re.MULTILINE)


def _normalise(text: str) -> str:
    """Unix line ends and lines stripped as mail-parser-reply strips them, so our header search
    sees exactly the text the library would, and the line-anchored patterns see clean lines.

    Quote markers deeper than eight levels are cut to eight: the patterns allow any quote
    depth, and a line of 50,000 "> " would otherwise make each of them backtrack for seconds.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    if ">>" in text or "> >" in text:  # eight quote marks in a row need one of these
        text = _DEEP_QUOTE.sub("> " * 8, text)
    return "\n".join(map(str.strip, text.split("\n"))).strip()


def _drop_quoted_lines(text: str) -> str:
    """Remove '>' lines (also inline answers' quoted questions) and trailing rule lines."""
    lines = [line for line in text.split("\n") if not line.lstrip(" \t").startswith(">")]
    while lines and (not lines[-1].strip() or _RULE_LINE.match(lines[-1])):
        lines.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class _Message(EmailMessage):
    """mail-parser-reply's message, told what it cannot know: its text comes from _normalise
    (Unix line ends, every line stripped the way the library strips them), so the library's own
    line normalisation would change nothing. Only its fix for a rule line of underscores right
    under the text is still needed, and only when such a line is there."""

    def _normalize_text(self) -> None:
        if _RULE_UNDER_TEXT.search(self.text):
            super()._normalize_text()


# The library's rule-line fix matches "\n\n" + an optional space + 32 "_"/"-": look for that.
_RULE_UNDER_TEXT = re.compile(r"\n\n ?[_-]{32}")


def _new_parser(text: str, **patterns: object) -> EmailMessage:
    return _Message(
        text=text, languages=[LANGUAGE_KEY], include_english=False, keep_hyphen_lists=True,
        **patterns,
    )


# The library builds its three patterns per message; build them once and hand them to every
# parser. Finding the first header ourselves lets the library work on the new text only instead
# of splitting and scanning every quoted reply.
_TEMPLATE = _new_parser("")
# Every alternative of the header pattern starts at a line start ("^"); saying so once in front
# lets the regex engine give up at once everywhere else instead of trying each alternative.
_FIRST_HEADER = re.compile("^(?:" + _TEMPLATE.HEADER_REGEX.pattern + ")", _TEMPLATE.HEADER_REGEX.flags)
# The library's signature pattern ends in "(.|\s)*" to take the rest of the mail; "[\s\S]*"
# takes exactly the same text without an alternation per character (several times faster).
_SIGNATURE = re.compile(
    _TEMPLATE.SIGNATURE_REGEX.pattern.replace(r"(.|\s)*)", r"[\s\S]*)"),
    _TEMPLATE.SIGNATURE_REGEX.flags,
)


class _NoHeaders:
    """The text handed to the library is already cut before the first header (found on the
    same normalised text), so its own header search could only come back empty: skip it."""

    def findall(self, text: str) -> list:
        return []


# Python's regex engine tries a pattern at every position of the text; for the signature
# pattern that costs more than everything else in stripping. A signature can only begin on a line
# that opens (after quote marks) with a closing, a thank-you, a "sent from" line or a rule, so
# a cheap search for such a line start (same case folding) says where the real search may
# begin. The answers are the same as searching from the top (tests/test_mail_parse.py checks it).
_SIGNATURE_LINE = re.compile(
    r"^[> ]*(?:" + "|".join(map(re.escape, _CLOSING_WORDS + _THANKS_WORDS + _SENT_FROM_WORDS))
    + r"|[-_]{2})",
    re.MULTILINE | re.IGNORECASE,
)


def _first_header(text: str) -> re.Match[str] | None:
    """The first quote header, tried only where one can begin: on a line with "--", a line
    that ends in a colon, or a line whose first colon follows a header key, or on the line above
    one of these (an attribution wrapped onto two lines). Same answer as a search from the top."""
    tried = -1
    for line in _header_lines(text):
        above = text.rfind("\n", 0, line - 1) + 1 if line else 0
        for start in (above, line):
            if start > tried:
                found = _FIRST_HEADER.match(text, start)
                if found is not None:
                    return found
                tried = start
    return None


def _header_lines(text: str) -> Iterator[int]:
    """Starts of the lines a header's first or second line can be (see _first_header), in
    order, found lazily: the first header usually stands a few lines down."""
    size = len(text)
    colon, dash = text.find(":"), text.find("--")
    while colon >= 0 or dash >= 0:
        at = min(i for i in (colon, dash) if i >= 0)
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = size if end < 0 else end
        line = text[start:end]
        first_colon = line.find(":")
        if "--" in line or first_colon >= 0 and (
                len(line[:first_colon].strip("> *")) <= _LONGEST_KEY
                or line.rstrip(" \t").endswith(":")):
            yield start
        if 0 <= colon < end:
            colon = text.find(":", end)
        if 0 <= dash < end:
            dash = text.find("--", end)


class _SignatureSearch:
    """The library's signature search, started at the first line that could open a signature
    (less the blank space before it, which the pattern's leading "\\s*" may take)."""

    def search(self, text: str) -> re.Match[str] | None:
        line = _SIGNATURE_LINE.search(text)
        if line is None:
            return None
        return _SIGNATURE.search(text, len(text[: line.start()].rstrip()))


class _DisclaimerSearch:
    """The library's disclaimer search, skipped when no disclaimer word is in the text."""

    pattern = _TEMPLATE.DISCLAIMERS_REGEX

    def findall(self, text: str) -> list:
        if not _may_contain(text, _DISCLAIMERS_LOWER):
            return []
        return self.pattern.findall(text)


_DISCLAIMERS_LOWER = tuple(word.lower() for word in _DISCLAIMERS)
# Letters the regex engine matches case-insensitively to an ASCII letter that str.lower() does
# not turn into it (dotless i, long s, Kelvin sign), and the one whose lower case is longer.
_CASE_ODDITIES = ("\u0131", "\u017f", "\u212a", "\u0130")


def _may_contain(text: str, lowered_words: tuple[str, ...]) -> bool:
    """Whether a case-insensitive search for the words could find one: str.find on the lower-
    cased text is many times faster than the regex engine's case-insensitive alternation."""
    if any(odd in text for odd in _CASE_ODDITIES):
        return True
    lowered = text.lower()
    return any(word in lowered for word in lowered_words)


_PATTERNS = {
    "_header_regex": _NoHeaders(),
    "_signature_regex": _SignatureSearch(),
    "_disclaimers_regex": _DisclaimerSearch(),
}


def _parser(text: str) -> EmailMessage:
    return _new_parser(text, **_PATTERNS)


def _library_split(text: str) -> str:
    """The first fragment before any quote header, signature and disclaimers removed.

    Empty when the text begins with a header (a pure forward or a bare quote).
    """
    first_header = _first_header(text)
    if first_header is not None:
        text = text[: first_header.start()]
        if not text.strip():
            return ""
    message = _parser(text).read()
    if not message.replies:
        return ""
    first = message.replies[0]
    if first.headers:
        return ""
    return first.body


def strip_quotes_and_signature(text: str) -> str:
    """The new text of a reply; the unstripped text when stripping would leave nothing."""
    if not text or not text.strip():
        return ""
    clean = _normalise(text)
    try:
        new = _drop_quoted_lines(_library_split(clean))
    except Exception:  # noqa: BLE001 - a pattern bug must never lose the mail's text
        new = ""
    return new if new else clean

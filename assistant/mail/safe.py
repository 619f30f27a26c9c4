"""Text that is safe to put in front of a reviewer: in the CLI, in Slack, in a database column.

Everything a sender wrote is hostile until shown otherwise. Three things make sender text
dangerous to the person who reads it, or to the systems that store and show it:

* **Invisible characters.** Bidi overrides (U+202A-202E, U+2066-2069) make ``gpj.exe`` look
  like ``exe.jpg`` and reverse a name or an address on screen; zero-width characters
  (U+200B-200D, U+2060, U+FEFF) and Unicode "tag" characters hide text from the reader (and
  split a personal number so the mask misses it). All of them, and every other format
  character (Unicode category Cf), are removed: the logical order is then what the reviewer
  sees.
* **Control characters.** NUL is refused by PostgreSQL text columns; C0/C1 controls move the
  cursor or recolour a terminal (ESC sequences). They are removed; bodies keep ``\\n`` and
  ``\\t``, one-line fields turn them into a space. U+2028/2029 become a line break (or a space).
* **Markup.** Text taken out of HTML has its entities decoded, so ``&lt;script&gt;`` in the
  sender's HTML becomes ``<script>`` in the text; a review page that pastes it in unescaped, or
  Slack (where ``<!channel>`` pings everyone and ``<http://x|y>`` disguises a link), would act on
  it. Every ``<`` that could open a tag, a comment, a declaration or a Slack control sequence
  (``<`` before a letter, ``/``, ``!``, ``?``, ``@`` or ``#``), and its entity forms that a second
  decoding would turn into one, becomes ``‹`` (U+2039): a reader still reads ``‹script>`` as what
  the sender wrote, no renderer takes it as markup, and it needs no escaping to display.

Output layers must still escape for their own format; this is the floor, not the ceiling.
"""

from __future__ import annotations

import re

__all__ = ["safe_text", "safe_line", "safe_id", "LOOKALIKE_LT"]

#: What a markup-opening ``<`` becomes: a single angle quote, readable and inert everywhere.
LOOKALIKE_LT = "\u2039"

# Every Cc and Cf character of Unicode 15 (tests/test_mail_hostile.py checks this list against
# unicodedata), plus lone surrogates (Cs), which no encoder accepts.
_CONTROL_RANGES = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_FORMAT_RANGES = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
_SURROGATES = "\ud800-\udfff"
# Bodies keep \n and \t; one-line fields also lose them (to a space, below).
_INVISIBLE = re.compile(f"[{_CONTROL_RANGES}{_FORMAT_RANGES}{_SURROGATES}]+")
_LINE_BREAKS = re.compile("\r\n?|[\u2028\u2029\x85]")
_ANY_WS = re.compile(r"\s+")
# "<" (or an entity that decodes to it) where a tag, comment, doctype, processing instruction
# or Slack control sequence could start.
_MARKUP_OPEN = re.compile(r"(?:<|&lt;?|&#0*60;?|&#x0*3c;?)(?=[A-Za-z/!?@#])", re.IGNORECASE)


def _strip_invisible(text: str, multiline: bool) -> str:
    """Line breaks normalised to \\n, then controls and format characters removed."""
    text = _LINE_BREAKS.sub("\n", text)
    if not multiline:
        text = text.replace("\n", " ").replace("\t", " ")
    return _INVISIBLE.sub("", text)


def safe_text(text: str | None, *, multiline: bool = True, markup: bool = True) -> str:
    """Sender text made safe to show and store (see the module doc for what and why).

    ``multiline`` keeps line breaks and tabs (bodies); ``markup=False`` leaves ``<`` alone, for
    values that are compared rather than read (Message-IDs keep their ``<...>``). Idempotent.
    """
    if not text:
        return ""
    text = _strip_invisible(str(text), multiline)
    if markup:
        text = _MARKUP_OPEN.sub(LOOKALIKE_LT, text)
    return text


def safe_line(text: str | None, limit: int | None = None) -> str:
    """A one-line field (subject, display name, address): safe, whitespace collapsed, capped."""
    line = _ANY_WS.sub(" ", safe_text(text, multiline=False)).strip()
    return line[:limit] if limit is not None else line


def safe_id(value: str | None, limit: int = 998) -> str:
    """A Message-ID-like token: no controls, no whitespace, its ``<...>`` kept for matching.

    Over-long ids (RFC 5322 caps a line at 998 characters) are dropped, not cut: a cut id
    would never match the real one, and could match a wrong one.
    """
    token = _ANY_WS.sub("", safe_text(value, multiline=False, markup=False))
    return token if len(token) <= limit else ""

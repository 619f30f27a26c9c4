"""Masking of Norwegian national identity numbers in free text.

People often put their fødselsnummer in a request "so you can find me", and staff copy it into
notes and reasons. The assistant never needs it to classify or answer, and it must not end up in
logs, Slack drafts, the audit trail or the classifier's training data, so every text is masked
before it is stored or shown.

People write the number in many ways: 6+5 digits with a space, two spaces, a tab, a dot, a line
break (an HTML `<br>`), dash variants, a zero-width space, in groups of two ("15 03 85 123 45"),
or in fullwidth digits from a phone keyboard. So digits are read as *groups* joined by a few
separator characters, and any run of whole groups holding exactly eleven digits is a candidate.

A bare 11-digit regex would also hit order numbers, phone numbers with a prefix and bank account
numbers; only candidates that pass python-stdnum's two check digits and carry a possible birth
date (fødselsnummer, D-numbers and H-numbers) are masked. A candidate never takes part of a
group, so digits inside a longer number are left alone.
"""

from __future__ import annotations

import re
import unicodedata

from stdnum.no import fodselsnummer

#: What a masked number reads as. Stable so tests, templates and the classifier can rely on it.
FNR_MASK = "[fødselsnummer]"
FNR_DIGITS = 11

# What may stand between the digit groups of one number: whitespace (incl. no-break space, tab,
# a line break), dots, every dash and minus, soft hyphen and zero-width characters.
_SEPARATOR = "[\\s.\\-\u00ad\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d\u200b-\u200d\u2060\ufeff]"
# Digit groups joined by at most four separator characters. `\d` is any Unicode decimal digit
# (fullwidth included); separators and digits never overlap, so matching is linear.
_CLUSTER = re.compile(rf"\d+(?:{_SEPARATOR}{{1,4}}\d+)*")
_GROUP = re.compile(r"\d+")


def _ascii_digits(text: str) -> str:
    """'１５' -> '15': fullwidth and other Unicode digits read as the number they show."""
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(ch)) for ch in text)


def _is_fnr(digits: str) -> bool:
    """Checksum and birth date, not just the shape: most 11-digit numbers are not identities."""
    return fodselsnummer.is_valid(digits)


def _windows(groups: list[re.Match[str]]) -> list[tuple[int, int]]:
    """Spans of runs of whole groups whose digits add up to exactly eleven and validate."""
    found: list[tuple[int, int]] = []
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            digits += _ascii_digits(groups[last].group())
            if len(digits) >= FNR_DIGITS:
                if len(digits) == FNR_DIGITS and _is_fnr(digits):
                    found.append((groups[first].start(), groups[last].end()))
                break
    return found


# A text with fewer digits than a number has cannot hold one: every stored text passes through
# here, most of them with a date or two at most. (Digits and non-digits alternate: no backtracking.)
_ENOUGH_DIGITS = re.compile(rf"(?:\d\D*){{{FNR_DIGITS}}}")


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping candidates become one span: when in doubt, mask more, never less."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def find_fnr(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of valid fødselsnummer, D- and H-numbers in ``text``, in order."""
    if not text or _ENOUGH_DIGITS.search(text) is None:
        return []
    spans: list[tuple[int, int]] = []
    for cluster in _CLUSTER.finditer(text):
        if sum(1 for ch in cluster.group() if ch.isdigit()) < FNR_DIGITS:
            continue
        groups = list(_GROUP.finditer(text, cluster.start(), cluster.end()))
        spans.extend(_windows(groups))
    return _merge(spans)


def mask_fnr(text: str) -> str:
    """``text`` with every valid fødselsnummer/D-/H-number replaced by :data:`FNR_MASK`."""
    if not text or _ENOUGH_DIGITS.search(text) is None:
        return text
    spans = find_fnr(text)
    if not spans:
        return text
    parts: list[str] = []
    cursor = 0
    for start, end in spans:
        parts += [text[cursor:start], FNR_MASK]
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def mask_personal_numbers(text: str) -> str:
    """The one masking entry point for the rest of the code, so new kinds of numbers
    (e.g. bank accounts) can be added here without touching the callers."""
    return mask_fnr(text)


def contains_personal_number(text: str) -> bool:
    """Whether any valid number is left: for guards and store scans."""
    return bool(find_fnr(text))

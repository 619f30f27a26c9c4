"""Masking of Norwegian national identity numbers in free text.

People often put their fødselsnummer in a request "so you can find me". The assistant never needs
it to classify or answer, and it must not end up in logs, Slack drafts or the classifier's
training data, so every body text is masked before anything else sees it.

A bare 11-digit regex would also hit order numbers, phone numbers with a prefix and bank account
numbers; only numbers that pass python-stdnum's two check digits and carry a possible birth date
(including D-numbers and H-numbers) are masked.
"""

from __future__ import annotations

import re

from stdnum.no import fodselsnummer

#: What a masked number reads as. Stable so tests, templates and the classifier can rely on it.
FNR_MASK = "[fødselsnummer]"

# Six digits (date), an optional single space/no-break space/hyphen, five digits; not glued to
# further digits on either side, so a part of a longer number never matches.
_CANDIDATE = re.compile(r"(?<![0-9])[0-9]{6}[ \u00a0-]?[0-9]{5}(?![0-9])")


def _is_fnr(candidate: str) -> bool:
    """Checksum and birth date, not just the shape: most 11-digit numbers are not identities."""
    digits = re.sub(r"[^0-9]", "", candidate)
    return fodselsnummer.is_valid(digits)


def find_fnr(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of valid fødselsnummer and D-numbers in ``text``, in order."""
    if not text:
        return []
    return [m.span() for m in _CANDIDATE.finditer(text) if _is_fnr(m.group())]


def mask_fnr(text: str) -> str:
    """``text`` with every valid fødselsnummer/D-number replaced by :data:`FNR_MASK`."""
    if not text:
        return text
    return _CANDIDATE.sub(lambda m: FNR_MASK if _is_fnr(m.group()) else m.group(), text)


def mask_personal_numbers(text: str) -> str:
    """The one masking entry point for the rest of the code, so new kinds of numbers
    (e.g. bank accounts) can be added here without touching the callers."""
    return mask_fnr(text)

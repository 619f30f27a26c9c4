"""The one text fold: the form in which every matcher of this package compares words.

The intent lexicons, the language profiles, the learned model, the policy retriever and section
ids all fold with this function, so "slett", "Slett" and "slétt" are one word everywhere and a
lexicon phrase matches the message it was written for. It imports nothing else of the package.

What fold does, and why:
- lower-case (str.lower);
- strip diacritics from Latin and Greek letters: "löschung" -> "loschung", "å" -> "a",
  "ø" -> "o", "άρθρο" -> "αρθρο", "đ" -> "d";
- spell the letters that are not an accented base letter as their usual ASCII: "æ" -> "ae",
  "œ" -> "oe", "ß" -> "ss", "þ" -> "th" ("personopplysningær" typed as "...aer" meets it).
"æ" stays distinct from "e" on purpose: bokmål "være" against nynorsk "vere" is how the
language profiles tell the two apart. The policy retriever, which wants Danish "længe" and
Swedish "länge" to meet Norwegian "lenge", spells æ/ä as e before folding (policies.py), on top
of this fold rather than instead of it.
No character that is not part of a word folds into one (tests/test_language.py checks every
code point), so words can be split before or after folding with the same result.
"""

from __future__ import annotations

import unicodedata


def _build_fold_table() -> dict[int, str]:
    """Map accented letters to their base so "personopplysninger" == "personopplysninger"
    typed without æøå, "löschung" == "loschung", "άρθρο" == "αρθρο"."""
    table: dict[int, str] = {}
    special = {"æ": "ae", "ø": "o", "œ": "oe", "ß": "ss", "đ": "d", "ł": "l", "þ": "th",
               "ð": "d", "ı": "i", "ς": "σ"}
    ranges = list(range(0x00C0, 0x0250)) + list(range(0x0370, 0x0400)) + list(range(0x1E00, 0x1F00))
    for code in ranges:
        char = chr(code).lower()
        if char in special:
            table[code] = special[char]
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if base and base != chr(code):
            table[code] = base.lower()
    for char, repl in special.items():
        table[ord(char)] = repl
        if len(char.upper()) == 1:
            table[ord(char.upper())] = repl
    table[ord("å")] = "a"
    table[ord("Å")] = "a"
    return table


_FOLD = _build_fold_table()


def fold(text: str) -> str:
    """Lower-case and strip diacritics: the form cues, tokens and policy words are compared in."""
    return text.lower().translate(_FOLD)

"""Intent classification of privacy-inbox messages from weighted phrase lexicons.

Why a lexicon and not a model: a privacy officer must be able to see why a message was read
as an erasure request and fix it by adding one phrase to intents/<lang>.toml. Every result
carries the phrases that matched, so staff can check the machine before they act on it.

How a message is scored (the file headers in intents/ explain the same to editors):
- the subject and the body are split into sentences; every lexicon of every language is
  applied (customers mix languages, and detection can be wrong on short texts);
- a cue adds its weight once per message; negative cues ("by accident", "the invoice")
  subtract within their own sentence, so a look-alike cancels only what is next to it;
- weak cues ("?delete") count only next to a personal-data word, where a bare "delete"
  in a shop inbox is about an order or an invoice;
- a sentence with a request frame (intents/frame.toml: "jeg ber om", "kan dere", "please")
  counts its cues 1.6 times: one clear first-person request to us is enough on its own;
- an action word and a personal-data object in one clause (intents/compose.toml: "slett" +
  "nummeret mitt") form a request, lifted like a frame when the action opens the sentence as a
  command; phrases and composition are alternatives per clause, the stronger counts;
- a sentence is split into clauses at "og" / "and" when an action verb follows, and negative
  cues act within their clause, so "remove me from the list and delete my details" keeps both;
- score -> confidence 1 - exp(-score); intents far weaker than the strongest one are
  incidental mentions (an access letter that names the right to erasure) and are kept
  below the threshold; "question" cues inside a request sentence are part of that request
  (x0.3), while a separate general question next to a request is kept as "question";
- a sentence that asks something (intents/frame.toml [asking]: "hvem", "which", "whether")
  counts its "question" cues 1.6 times: "who has access to my data" is a question about
  processing even without a request verb;
- a reply's subject ("SV: Innsyn") is not scored: the sender did not write it now; a new
  subject is a heading for the body, so a look-alike in the body ("søkerlisten", "the tender")
  also cancels that intent's cues in the subject ("Innsyn").
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import compress
from pathlib import Path
from typing import NamedTuple

from rapidfuzz.distance import Levenshtein

from .. import resources
from ..vocabulary import INTENTS, Intent, is_reply_subject
from .language import (
    TOKEN_RE,
    decide_language,
    fold,
    fold_words,
    folded_tokens,
    read_toml,
    scores_from_tokens,
)

ACTION_INTENTS = frozenset(INTENTS) - {Intent.QUESTION}

DEFAULT_DIRECTORY = resources.shipped("intents")  # the shipped lexicons; see resources.layers
MAX_SCORED_CHARS = 20_000  # a 5 MB mail is scored on its start: requests come first
THRESHOLD = 0.6  # confidence needed to act (a cue of weight 1.0 alone reaches 0.63)
SIGNAL = 0.25  # below this confidence there is no signal at all, not even "unclear"
QUESTION_BESIDE_REQUEST = 0.3  # a "how long" inside a request sentence is part of the request
# "everything you have on me, in JSON" is one portability request, not access besides it: in a
# clause where portability scores, access cues describe the data to be moved (labelling rules in
# tests/data/README.md). An access request in a sentence of its own still counts in full.
PORTABILITY_COVERS_ACCESS = 0.3
RELATIVE = 0.25  # an intent weaker than this share of the strongest is incidental
WEAK_ELSEWHERE = 0.5  # a weak cue whose personal-data word is in another sentence
GAP = "..."
MAX_GAP = 4  # "..." in a phrase allows up to this many words in between
FUZZY_MIN_LEN = 5  # shorter tokens are never fuzzy-matched: too many real words are near
CACHE_LIMIT = 200_000
MAX_EVIDENCE = 8

SPECIAL_SECTIONS = ("any", "topic", "veto", "frame", "asking", "clause", "greeting", "possible",
                    "not_request")
# [possible]: a cue that the message may be a request ("GDPR", "personvern", "mine data") even
# when no intent reaches the threshold; such a message goes to a person (unclear), never to "no
# request". [not_request]: what certainly is not one (an order confirmation, an auto-reply, a
# newsletter, phishing): such a message is not sent to triage on a weak cue alone.
POSSIBLE, NOT_REQUEST = "possible", "not_request"
# Scripts other than Latin and Greek, by name: a message mostly written in one of them, in a
# language that has no lexicon, goes to a person with its language (or at least its script)
# named when no intent is found.
SCRIPTS = (
    ("Cyrillic", "\u0400-\u04FF"), ("Arabic", "\u0600-\u06FF\u0750-\u077F"),
    ("Ge'ez", "\u1200-\u139F"), ("Hebrew", "\u0590-\u05FF"), ("Armenian", "\u0530-\u058F"),
    ("Georgian", "\u10A0-\u10FF"), ("Thai", "\u0E00-\u0E7F"), ("Devanagari", "\u0900-\u097F"),
    ("Chinese", "\u4E00-\u9FFF"), ("Japanese", "\u3040-\u30FF"), ("Korean", "\uAC00-\uD7AF"),
)
# The languages of those scripts whose lexicons are trusted to tell a request from other mail
# (and have profiles in languages.toml). Ge'ez is left out: the Tigrinya lexicon is small and
# not yet checked by a native speaker, and Amharic shares the script, so such mail always goes
# to a person when no intent is found.
SCRIPT_LANGUAGES = {"Cyrillic": ("ru", "uk"), "Arabic": ("ar",)}
_SCRIPT_LANGUAGE_SET = frozenset(code for codes in SCRIPT_LANGUAGES.values() for code in codes)
UNREAD_SCRIPTS = re.compile("[" + "".join(r for _, r in SCRIPTS) + "]")
_SCRIPT_OF = [(name, re.compile("[" + r + "]")) for name, r in SCRIPTS]
# Below this language confidence a Cyrillic text may be Bulgarian, Serbian or Belarusian, not
# the Russian or Ukrainian the lexicons read.
SURE_OF_SCRIPT_LANGUAGE = 0.5
# Below this the language profiles found too little to name a language: the message's language
# is the organisation's default only as a fallback.
SURE_TO_NAME = 0.3
UNREAD_SCRIPT_LETTERS = 12  # this many letters of such a script make a message "written in it"
# ... or this many when they are most of its letters: a Chinese or Japanese sentence is a few
# characters ("请删除我的个人数据" is nine).
FEW_SCRIPT_LETTERS = 4
# The language of a message written in a script or language the product cannot name (an ISO
# 639-2 code, "undetermined"): its reply is in English (drafting.reply_language), never in the
# organisation's default language, which the sender did not write in.
UNDETERMINED = "und"
# Nested sections of intents/compose.toml: [action.<intent>] and [object.<intent>|any].
COMPOSED_SECTIONS = ("action", "object")
ACTION = "action:"  # cue.intent prefix of an action word ("action:erasure")
_ACTION_OF = {intent: ACTION + intent for intent in INTENTS}
OBJECT = "object:"  # cue.intent prefix of an object word ("object:any", "object:restriction")
CLAUSE_REACH = 3  # a conjunction starts a new clause when an action begins this close after it
FRAME_BOOST = 1.6
# Objects of "stop" that only point back ("slutt med det"): an opt-out object only when the
# message names marketing elsewhere ("brosjyrer ... Slutt med det"), not after analysis or
# tracking ("Jeg vil ikke at dere analyserer meg. Slutt med det": objection). L and M, 2026-12-01.
ANAPHORIC_OBJECTS = frozenset({"det"})
_OPT_OUT_OBJECT = "object:opt_out"
# A look-alike this strong says what the sentence is about ("brukerkoden", "bestillingen"), not
# merely a context that often goes with look-alikes ("har sluttet"): see Classification.lookalikes.
FIRM_LOOKALIKE = -2.0  # a cue in a sentence that asks us for something ("jeg ber om", "please")

_NORDIC = frozenset({"nb", "nn", "da", "sv", "en", "common"})
# Which lexicons a message's typos are corrected against, by detected language.
FUZZY_GROUPS: dict[str, frozenset[str]] = {
    "nb": _NORDIC, "nn": _NORDIC, "da": _NORDIC, "sv": _NORDIC,
    "en": frozenset({"en", "common", "nb"}),
}

# Tokens are words, "§", and sentence boundaries: . ! ? before a capitalised word (not
# "art. 15"), or before a lower-case word after a word of three letters or more that is no common
# abbreviation (phone-typed "fjern meg. jeg var bare på et webinar", not "f.eks. at", "ca. 8"),
# a blank line, a colon/semicolon at the end of a line, a new list item, a new form field
# ("\nE-post: ...": the field's name is no object of the message), or a dash
# between spaces ("Det trenger dere ikke – slett det nå": the "ikke" is not the deletion's).
_SCAN = re.compile(
    r"[^\W_]+|§"
    r"|[.!?][\"')»”]*\s+(?=[\"'(«“]*[A-ZÆØÅÄÖÜÉÈÀÇÑÕÃÂÊÎÔŠČŘŽĐĆŞȘȚĂΑ-ΩΆΈΉΊΌΎΏ])"
    r"|[.!?](?<=[^\W\d_]{3}.)(?<!eks.|tlf.|evt.|osv.|mvh.|ang.|ref.|jfr.|mht.|ifm.|inc.|ltd.|etc.)"
    r"\s+(?=[a-zæøåäöü])"
    r"|\n[ \t]*\n\s*"
    r"|[:;][ \t]*\n\s*"
    r"|\n(?=[ \t]*(?:[-*•]|\d{1,2}[.)])\s)"
    r"|\n(?=[ \t]*[^\W\d_][^\W\d_ -]{0,14}(?:[ -][^\W\d_]{1,14})?:[ \t])"
    r"|[ \t][–—][ \t]"
)

# An unticked box of a web form and its label ("[ ] Sletting" up to the next box or line end).
_UNTICKED = re.compile(r"\[ \][ \t]*[^\[\]\n]*")


# What a cue tells about the sentence it stands in, as bits, so scoring can flag each sentence
# in one pass over the hits.
ROLE_SCORING, ROLE_FRAME, ROLE_ASKING, ROLE_CLAUSE, ROLE_TOPIC, ROLE_VETO, ROLE_LOOKALIKE = (
    1, 2, 4, 8, 16, 32, 64)
_LOOKALIKE_SECTIONS = frozenset(INTENTS) | {"any"}
# Portability before access, so a clause's access cues know whether portability scored there.
_SCORING_ORDER = ("portability", *(i for i in INTENTS if i != "portability"))
_SECTION_ROLES = {"frame": ROLE_FRAME, "asking": ROLE_ASKING, "clause": ROLE_CLAUSE,
                  "topic": ROLE_TOPIC, "veto": ROLE_VETO}


@dataclass(frozen=True)
class IntentScore:
    intent: str
    confidence: float
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Classification:
    intents: tuple[str, ...]
    language: str
    language_confidence: float
    scores: tuple[IntentScore, ...]
    unclear: bool
    triage: str = ""  # why a message without intents still goes to a person
    not_request: bool = False  # a [not_request] phrase: certainly no request unless an intent is found
    # Intents a firm look-alike phrase (weight FIRM_LOOKALIKE or below) spoke against
    # ("brukerkoden" for erasure; "any" for an [any] phrase such as "ved et uhell"): the learned
    # model may not add them over it (pipeline.GUARDED).
    lookalikes: frozenset[str] = frozenset()
    # Chosen intents a phrase of the operator's own lexicon file spoke for: the operator's word,
    # which the arbiter (pipeline.arbitrate) does not set aside.
    operator_intents: frozenset[str] = frozenset()

    @property
    def possible_request(self) -> bool:
        """A request, or maybe one (unclear): a case a person must see. False only for what
        the classifier is sure is not a data-subject request."""
        return bool(self.intents) or self.unclear

    def explain(self) -> str:
        """Readable account of the decision, for staff and for `dsr classify --explain`."""
        lines = [f"language: {self.language} (confidence {self.language_confidence:.2f})"]
        if self.intents:
            lines.append("intents: " + ", ".join(self.intents))
        elif self.unclear:
            lines.append("intents: none above the threshold - UNCLEAR, a person should read it"
                         + (f" ({self.triage})" if self.triage else ""))
        else:
            lines.append("intents: none (no data-subject request found)")
        for score in self.scores:
            mark = "*" if score.intent in self.intents else " "
            found = "; ".join(f'"{e}"' for e in score.evidence) or "-"
            lines.append(f" {mark} {score.intent:<13} {score.confidence:.2f}  evidence: {found}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- lexicon


@dataclass(frozen=True)
class Cue:
    """One phrase from a lexicon file, compiled to pattern ids and gaps."""

    intent: str  # an intent, or "any" / "topic" / "veto"
    phrase: str  # as written in the file, for explanations
    elements: tuple[int | None, ...]  # pattern ids; None = a gap of up to MAX_GAP words
    weight: float
    weak: bool
    source: str  # file stem, e.g. "nb"
    required: frozenset[int] = frozenset()  # every pattern id the phrase needs
    anchor: int = 0  # the pattern id searched for first: the phrase's rarest word
    before: tuple[int | None, ...] = ()  # elements before the anchor, nearest first
    after: tuple[int | None, ...] = ()  # elements after the anchor
    key: int = 0  # unique number of the cue, to remember cheaply that it was counted
    own: bool = False  # from the operator's intents folder: what it finds is never set aside
    # Derived once here, because matching and scoring ask them for every hit of every message:
    is_action: bool = field(init=False, repr=False, compare=False)  # an [action.*] word
    role: int = field(init=False, repr=False, compare=False)  # ROLE_* bits, for sentence flags

    def __post_init__(self) -> None:
        is_action = self.intent.startswith(ACTION)
        scoring = is_action or self.intent in INTENTS  # can raise an intent's score
        lookalike = self.weight < 0 and self.intent in INTENTS  # negative cue of an intent
        object.__setattr__(self, "is_action", is_action)
        role = (ROLE_SCORING if scoring else 0) | (ROLE_LOOKALIKE if lookalike else 0)
        object.__setattr__(self, "role", role | _SECTION_ROLES.get(self.intent, 0))


@dataclass
class Lexicon:
    """All cues of all languages, plus the token -> pattern cache that makes scoring fast."""

    cues: list[Cue]
    by_anchor: dict[int, list[Cue]]
    exact: dict[str, int]  # folded word -> pattern id
    prefixes: dict[str, int]  # folded stem (from "stem*") -> pattern id
    # (first letter, length) -> [(word or stem, pattern id, lexicon files it comes from)]
    fuzzy_words: dict[tuple[str, int], list[tuple[str, int, frozenset[str]]]]
    fuzzy_stems: dict[tuple[str, int], list[tuple[str, int, frozenset[str]]]]
    known: frozenset[str]  # words that must match only themselves (function words)
    min_prefix: int
    own_objects: frozenset[str] = frozenset()  # intents with their own [object.<intent>]
    languages: frozenset[str] = frozenset()  # the language codes that have a lexicon file
    has_own: bool = False  # some cue comes from the operator's own intents folder
    # Per anchor, (cue, after, before) for each of its cues in by_anchor order: a tuple is
    # unpacked faster than three attributes are read, and _find_hits reads them per anchor.
    plans: dict[int, tuple[tuple[Cue, tuple[int | None, ...], tuple[int | None, ...], frozenset[int]], ...]] = field(
        default_factory=dict)
    caches: dict[frozenset[str], tuple[dict[str, frozenset[int]], dict[str, frozenset[int]]]] = field(
        default_factory=dict)

    def matcher(self, language: str) -> tuple[dict[str, frozenset[int]], dict[str, frozenset[int]],
                                              Callable[[str], None]]:
        """A token -> pattern ids function for messages in this language. Exact words and
        stems of every language match; typo-tolerance only uses the message's own language
        family, so a Portuguese "reclamação" is not read as a misspelt Czech "reklam*"."""
        group = FUZZY_GROUPS.get(language, frozenset({language, "en", "common"}))
        cache, anchors = self.caches.setdefault(group, ({}, {}))
        anchor_ids = self.by_anchor.keys()

        def resolve(token: str) -> None:
            if len(cache) > CACHE_LIMIT:
                cache.clear()
                anchors.clear()
            if _is_break(token):
                cache[token] = anchors[token] = BREAK
                return
            hit = self._resolve(fold(token), group)
            cache[token] = hit
            anchors[token] = frozenset(hit & anchor_ids)

        return cache, anchors, resolve

    def _resolve(self, word: str, group: frozenset[str]) -> frozenset[int]:
        ids: set[int] = set()
        exact = self.exact.get(word)
        if exact is not None:
            ids.add(exact)
        for k in range(self.min_prefix, len(word) + 1):
            pid = self.prefixes.get(word[:k])
            if pid is not None:
                ids.add(pid)
        if not ids and len(word) >= FUZZY_MIN_LEN and word not in self.known and not word.isdigit():
            ids.update(self._fuzzy(word, group))
        return frozenset(ids)

    def _fuzzy(self, word: str, group: frozenset[str]) -> set[int]:
        """Typos and missing letters ("personopplysiner", "slete", "insyn"): one edit for
        ordinary words, two for long ones; the first letter must be right. A corrected word
        also takes the stems it starts with ("slete" -> "slette" -> "slett*")."""
        found: set[int] = set()
        n = len(word)
        edits = 2 if n >= 10 else 1
        for length in range(n - edits, n + edits + 1):
            for cand, pid, sources in self.fuzzy_words.get((word[0], length), ()):
                if sources.isdisjoint(group):
                    continue
                if Levenshtein.distance(word, cand, score_cutoff=edits) <= edits:
                    found.add(pid)
                    for k in range(self.min_prefix, len(cand) + 1):
                        stem_id = self.prefixes.get(cand[:k])
                        if stem_id is not None:
                            found.add(stem_id)
        for length in range(max(1, n - 12), n + edits + 1):
            for stem, pid, sources in self.fuzzy_stems.get((word[0], length), ()):
                if sources.isdisjoint(group):
                    continue
                limit = 2 if len(stem) >= 10 else 1
                for cut in (len(stem) - 1, len(stem), len(stem) + 1):
                    if cut <= n and Levenshtein.distance(word[:cut], stem, score_cutoff=limit) <= limit:
                        found.add(pid)
                        break
        return found


_HEADER_NOTE = ("sections other than intents: any, topic, veto, frame, asking, clause, greeting, "
                "action.<intent>, object.<intent> / object.any")


def _parse_phrase(phrase: str) -> tuple[bool, list[str]]:
    weak = phrase.startswith("?")
    text = phrase[1:] if weak else phrase
    parts: list[str] = []
    for chunk in text.split():
        if chunk == GAP:
            parts.append(GAP)
            continue
        star = chunk.endswith("*")
        words = TOKEN_RE.findall(fold(chunk.rstrip("*")))
        if star and words:
            words[-1] += "*"
        parts.extend(words)
    return weak, parts


def lexicon_files(directories: tuple[Path, ...]) -> list[Path]:
    """The lexicon files in use: *.toml over the folders, file by file (an operator's nb.toml
    replaces the shipped nb.toml, the other shipped files stay)."""
    return resources.merged_files(directories, "*.toml")


def _read_files(files: list[Path]) -> list[tuple[str, str, str, float]]:
    """(source, section, phrase, weight) from every lexicon file except languages.toml."""
    rows: list[tuple[str, str, str, float]] = []
    for path in files:
        if path.name == "languages.toml":
            continue
        data = read_toml(path)
        for section, entries in data.items():
            if not isinstance(entries, dict):
                continue
            try:
                for name, phrases in _sections(path.name, section, entries):
                    rows.extend((path.stem, name, phrase, _weight(phrase, weight))
                                for phrase, weight in phrases.items())
            except ValueError as exc:
                raise ValueError(f"{path}:{_line_of(path, exc.args[1])}: {exc.args[0]}") from None
    return rows


def _weight(phrase: str, weight: object) -> float:
    """A cue's weight is a number, and the phrase has a word to match (else it never could)."""
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ValueError(f"phrase {phrase!r}: weight must be a number, not {weight!r}", phrase)
    if not any(part != GAP for part in _parse_phrase(phrase)[1]):
        raise ValueError(f"phrase {phrase!r} has no word to match", phrase)
    return float(weight)


def _line_of(path: Path, needle: str) -> str:
    """The first line of the file that mentions `needle` (a section or phrase), for messages."""
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if needle and needle in line:
                return str(number)
    except OSError:
        pass
    return "1"


def _sections(file: str, section: str, entries: dict) -> list[tuple[str, dict]]:
    """A file's sections as (cue intent, phrases); [action.erasure] becomes "action:erasure".
    An unknown section raises ValueError(message, the header text to find its line by)."""
    if section in COMPOSED_SECTIONS:
        found = []
        for sub, phrases in entries.items():
            allowed = INTENTS if section == "action" else (*INTENTS, "any")
            if sub not in allowed or not isinstance(phrases, dict):
                raise ValueError(f"unknown section [{section}.{sub}] ({_HEADER_NOTE})",
                                 f"{section}.{sub}")
            found.append((f"{section}:{sub}", phrases))
        return found
    if section not in INTENTS and section not in SPECIAL_SECTIONS:
        raise ValueError(f"unknown section [{section}] ({_HEADER_NOTE})", f"[{section}")
    return [(section, entries)]


def _known_words(files: list[Path]) -> frozenset[str]:
    """Function words never fuzzy-match a cue ("sende" is not a typo of "slette")."""
    path = next((p for p in files if p.name == "languages.toml"), None)
    if path is None:
        return frozenset()
    data = read_toml(path)
    words: set[str] = set()
    for profile in data.values():
        if isinstance(profile, dict):
            for key in ("words", "markers"):
                value = profile.get(key, "")
                words.update(fold(w) for w in (value.split() if isinstance(value, str) else value))
    return frozenset(words)


def _with_anchor(cue: Cue, words: dict[int, str], function_words: frozenset[str]) -> Cue:
    """Search a phrase by its rarest word ("slettet" in "jeg slettet"), not by its first:
    function words occur in every sentence and would make every phrase a candidate."""
    positions = [i for i, e in enumerate(cue.elements) if e is not None]
    best = max(positions, key=lambda i: (words[cue.elements[i]] not in function_words,
                                         len(words[cue.elements[i]])))
    return replace(cue, anchor=cue.elements[best],
                   before=tuple(reversed(cue.elements[:best])), after=cue.elements[best + 1:])


def _merge_duplicates(cues: list[Cue]) -> list[Cue]:
    """The same phrase in two files ("reklame" in nb and da) is one cue with the stronger
    weight, so it is neither counted twice nor tried twice."""
    best: dict[tuple[str, tuple[int | None, ...], bool], Cue] = {}
    for cue in cues:
        key = (cue.intent, cue.elements, cue.weight < 0)
        if key not in best or abs(cue.weight) > abs(best[key].weight) or (
                abs(cue.weight) == abs(best[key].weight) and cue.own and not best[key].own):
            best[key] = cue
    return list(best.values())


def load_lexicon(directory: Path | None = None) -> Lexicon:
    """Compile every intents/*.toml lexicon once (cached per set of folders). By default the
    operator's intents folder laid over the shipped one (resources.layers); a mistake in a file
    raises ValueError as `path:line: what is wrong`."""
    directories = (Path(directory),) if directory else resources.layers("intents")
    return _load_lexicon(directories)


@lru_cache(maxsize=8)
def _load_lexicon(directories: tuple[Path, ...]) -> Lexicon:
    files = lexicon_files(directories)
    # The operator's files: every layer above the shipped one (resources.layers).
    base = Path(directories[-1]).resolve()
    own_stems = {f.stem for f in files if len(directories) > 1 and f.parent.resolve() != base}
    exact: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    origin: dict[str, set[str]] = {}  # folded word or "stem*" -> lexicon files using it
    cues: list[Cue] = []
    for source, section, phrase, weight in _read_files(files):
        weak, parts = _parse_phrase(phrase)
        elements: list[int | None] = []
        for part in parts:
            if part == GAP:
                if elements and elements[-1] is not None:
                    elements.append(None)
                continue
            table = prefixes if part.endswith("*") else exact
            key = part.rstrip("*")
            origin.setdefault(part, set()).add(source)
            if key not in table:
                table[key] = len(exact) + len(prefixes)
            elements.append(table[key])
        while elements and elements[-1] is None:
            elements.pop()
        if elements:
            required = frozenset(e for e in elements if e is not None)
            cues.append(Cue(section, phrase, tuple(elements), weight, weak, source, required,
                            own=source in own_stems))
    cues = _merge_duplicates(cues)
    function_words = _known_words(files)
    words = {pid: word for word, pid in exact.items()} | {pid: stem for stem, pid in prefixes.items()}
    cues = [replace(_with_anchor(cue, words, function_words), key=n) for n, cue in enumerate(cues)]
    by_anchor: dict[int, list[Cue]] = {}
    for cue in cues:
        by_anchor.setdefault(cue.anchor, []).append(cue)
    known = function_words - set(exact)
    fuzzy_words: dict[tuple[str, int], list[tuple[str, int, frozenset[str]]]] = {}
    for word, pid in exact.items():
        if len(word) >= FUZZY_MIN_LEN + 1 and not word.isdigit():
            entry = (word, pid, frozenset(origin.get(word, ())))
            fuzzy_words.setdefault((word[0], len(word)), []).append(entry)
    fuzzy_stems: dict[tuple[str, int], list[tuple[str, int, frozenset[str]]]] = {}
    for stem, pid in prefixes.items():
        if len(stem) >= FUZZY_MIN_LEN + 1:
            entry = (stem, pid, frozenset(origin.get(stem + "*", ())))
            fuzzy_stems.setdefault((stem[0], len(stem)), []).append(entry)
    return Lexicon(
        cues=cues, by_anchor=by_anchor, exact=exact, prefixes=prefixes,
        fuzzy_words=fuzzy_words, fuzzy_stems=fuzzy_stems, known=known,
        min_prefix=min((len(p) for p in prefixes), default=1),
        own_objects=frozenset(c.intent[len(OBJECT):] for c in cues if c.intent.startswith(OBJECT)) - {"any"},
        languages=frozenset(c.source for c in cues),
        has_own=any(c.own for c in cues),
        plans={pid: tuple((c, c.after, c.before, c.required) for c in found)
               for pid, found in by_anchor.items()},
    )


# --------------------------------------------------------------------------- matching


class _Hit(NamedTuple):
    cue: Cue
    sentence: int
    start: int  # token index
    end: int  # token index, exclusive


BREAK: frozenset[int] = frozenset({-1})  # the pattern set of a sentence boundary token
NO_MATCH = -10


def _is_break(token: str) -> bool:
    return not (token[0].isalnum() or token == "§")


def _scan(tokens: list[str], lexicon: Lexicon,
          language: str) -> tuple[list[frozenset[int]], list[frozenset[int]]]:
    """Per token: every pattern id it matches, and the ids that anchor a phrase (a sentence
    boundary gets BREAK in both). Hot path: dict lookups; typo matching only on a miss.
    A KeyError marks the miss, because `None in ids` would compare every frozenset."""
    cache, anchors, resolve = lexicon.matcher(language)
    try:
        return list(map(cache.__getitem__, tokens)), list(map(anchors.__getitem__, tokens))
    except KeyError:
        pass
    ids: list[frozenset[int]] = []
    found_anchors: list[frozenset[int]] = []
    for token in tokens:  # resolve() may empty a full cache: read each token right after
        if token not in cache:
            resolve(token)
        ids.append(cache[token])
        found_anchors.append(anchors[token])
    return ids, found_anchors


def _walk(seq: tuple[int | None, ...], ids: list[frozenset[int]], pos: int, step: int) -> int:
    """Match seq from pos in direction step (+1 / -1); gaps ("...") take the nearest match
    and never cross a sentence boundary. Returns the position after the last match, or
    NO_MATCH."""
    n = len(ids)
    j = 0
    m = len(seq)
    while j < m:
        element = seq[j]
        if element is None:
            target = seq[j + 1]
            for _ in range(MAX_GAP + 1):
                if not 0 <= pos < n or ids[pos] is BREAK:
                    return NO_MATCH
                if target in ids[pos]:
                    break
                pos += step
            else:
                return NO_MATCH
            j += 2
        else:
            if not 0 <= pos < n or element not in ids[pos]:
                return NO_MATCH
            j += 1
        pos += step
    return pos


def _find_hits(lexicon: Lexicon, ids: list[frozenset[int]],
               anchors: list[frozenset[int]]) -> tuple[list[_Hit], list[int]]:
    """Every cue occurrence, tagged with its sentence number, and the token index where each
    sentence starts. A phrase is only walked where its anchor word stands.

    Hot path (about 200 cues tried for a 1 KB mail). The word next to the anchor is checked
    inline before _walk is called: it rejects most phrases at once, which is cheaper than
    first listing the words the whole message contains. Hits are built with tuple.__new__,
    which skips the Python-level constructor of the named tuple. The order of the hits (by
    anchor position, then as the lexicon lists the cues) matters: scoring breaks ties by it."""
    hits: list[_Hit] = []
    append = hits.append
    new_hit = tuple.__new__
    starts = [0]
    plans = lexicon.plans
    last = len(ids) - 1
    sentence = 0
    present: frozenset[int] | None = None  # every pattern id in the message, built when needed
    for i in compress(range(len(anchors)), anchors):
        pids = anchors[i]
        if pids is BREAK:
            sentence += 1
            starts.append(i + 1)
            continue
        for pid in pids:
            for cue, after, before, required in plans[pid]:
                if after:
                    head = after[0]
                    if head is not None and (i >= last or head not in ids[i + 1]):
                        continue
                    if len(after) == 1:
                        end = i + 2
                    else:
                        if present is None:
                            present = frozenset().union(*ids)
                        if not required <= present:
                            continue
                        end = _walk(after, ids, i + 1, 1)
                        if end == NO_MATCH:
                            continue
                else:
                    end = i + 1
                if before:
                    head = before[0]
                    if head is not None and (i == 0 or head not in ids[i - 1]):
                        continue
                    if len(before) == 1:
                        start = i - 1
                    else:
                        if present is None:
                            present = frozenset().union(*ids)
                        if not required <= present:
                            continue
                        start = _walk(before, ids, i - 1, -1) + 1
                        if start == NO_MATCH + 1:
                            continue
                else:
                    start = i
                append(new_hit(_Hit, (cue, sentence, start, end)))
    return hits, starts


def _clauses(hits: list[_Hit], start: int) -> list[tuple[int, list[_Hit]]]:
    """Split a sentence at "og" / "and" / "och" when an action follows at once ("remove me
    from the list and delete my details"): each clause keeps its own intent and its own
    look-alikes, so the "list" that makes the first clause an opt-out cannot cancel the
    erasure in the second. Returns (first token, hits) per clause.

    Only a verb from [action.*] opens a clause: "profilering og markedsføring" is one list of
    nouns, "slett nummeret og ikke send flere SMS" is two requests. Linear in the hits, so a
    hostile mail of one endless sentence stays cheap."""
    conjunctions = [h for h in hits if h.cue.intent == "clause"]
    if not conjunctions:
        return [(start, hits)]
    action_starts = {h.start for h in hits if h.cue.is_action}
    bounds = sorted({c.end for c in conjunctions
                     if any(s in action_starts for s in range(c.end, c.end + CLAUSE_REACH))})
    if not bounds:
        return [(start, hits)]
    groups: list[tuple[int, list[_Hit]]] = [(edge, []) for edge in (start, *bounds)]
    for hit in hits:
        groups[bisect_right(bounds, hit.start)][1].append(hit)
    return [g for g in groups if g[1]]


def _composed(intent: str, grouped: dict[str, list[_Hit]], clause_start: int,
              own_objects: frozenset[str]) -> tuple[float, _Hit, _Hit, bool] | None:
    """An action word of this intent and a personal-data object in the same clause
    ("slett" + "nummeret mitt", "wipe" + "everything you have on us"): (weight, action hit,
    object hit, imperative). Imperative = the action opens the clause, after at most a
    greeting ("Hei, slett ..."), which makes it a request like a frame does."""
    actions = grouped.get(_ACTION_OF[intent])
    if not actions:
        return None
    objects = grouped.get(OBJECT + (intent if intent in own_objects else "any"))
    if not objects:
        return None
    greeting_ends = {h.end for h in grouped.get("greeting", ()) if h.start == clause_start}
    best: tuple[float, _Hit, _Hit, bool] | None = None
    for action in actions:
        if action.cue.weight <= 0:
            continue
        for obj in objects:
            if obj.end <= action.start or obj.start >= action.end:
                imperative = action.start == clause_start or action.start in greeting_ends
                candidate = (action.cue.weight, action, obj, imperative)
                if best is None or (candidate[0], candidate[3]) > (best[0], best[3]):
                    best = candidate
                break
    return best


def _score(hits: list[_Hit], starts: list[int], own_objects: frozenset[str] = frozenset(),
           heading: int = 0) -> tuple[dict[str, float], dict[str, list[tuple[float, _Hit]]]]:
    """Per-intent score and the weighted hits behind it (see the module docstring).
    `heading` = how many leading sentences are the subject line."""
    # One pass over the hits: per sentence its hits and the ROLE_* bits of its cues.
    by_sentence: dict[int, list[_Hit]] = {}
    roles: dict[int, int] = {}
    topic_in: set[int] = set()
    veto = 0.0
    body_lookalike: dict[str, float] = {}  # per intent, its strongest look-alike in the body
    named_marketing = False  # an opt-out object other than a bare "det" anywhere in the message
    for hit in hits:
        cue, index = hit[0], hit[1]
        if cue.intent == _OPT_OUT_OBJECT and cue.phrase not in ANAPHORIC_OBJECTS:
            named_marketing = True
        found = by_sentence.get(index)
        if found is None:
            by_sentence[index] = [hit]
            roles[index] = cue.role
        else:
            found.append(hit)
            roles[index] |= cue.role
        role = cue.role
        if role & (ROLE_TOPIC | ROLE_VETO | ROLE_LOOKALIKE):
            if role & ROLE_TOPIC:
                topic_in.add(index)
            if role & ROLE_VETO:
                veto = max(veto, cue.weight)
            if role & ROLE_LOOKALIKE and heading and index >= heading:
                body_lookalike[cue.intent] = min(body_lookalike.get(cue.intent, 0.0), cue.weight)
    scores = dict.fromkeys(INTENTS, 0.0)
    evidence: dict[str, list[tuple[float, _Hit]]] = {}  # only intents that scored
    used: set[int | str] = set()
    for index in sorted(by_sentence):
        role = roles[index]
        if not role & ROLE_SCORING:
            continue  # only topic/frame/object words here: nothing can score (most sentences)
        found = by_sentence[index]
        framed = bool(role & ROLE_FRAME)
        asking = bool(role & ROLE_ASKING)
        has_action = False  # set once an action intent scores here; "question" comes last
        weak_factor = 1.0 if index in topic_in else (WEAK_ELSEWHERE if topic_in else 0.0)
        clauses = _clauses(found, starts[index]) if role & ROLE_CLAUSE else ((starts[index], found),)
        for clause_start, clause_hits in clauses:
            grouped: dict[str, list[_Hit]] = {}
            for hit in clause_hits:
                intent = hit[0].intent
                if (intent == _OPT_OUT_OBJECT and not named_marketing
                        and hit[0].phrase in ANAPHORIC_OBJECTS):
                    continue  # "slutt med det" about analysis or tracking is no opt-out
                group = grouped.get(intent)
                if group is None:
                    grouped[intent] = [hit]
                else:
                    group.append(hit)
            damp_any = sum(h.cue.weight for h in grouped["any"]) if "any" in grouped else 0.0
            portable = False  # portability scored in this clause (it is scored before access)
            for intent in _SCORING_ORDER:
                if intent not in grouped and _ACTION_OF[intent] not in grouped:
                    continue  # nothing of this intent here: it cannot score (hot path)
                value, positives, negative = _clause_value(
                    intent, grouped, clause_start, framed or (asking and intent == "question"),
                    weak_factor, used, own_objects)
                if index < heading:
                    negative += body_lookalike.get(intent, 0.0)
                if not positives:
                    continue
                if intent == "question" and has_action:
                    value *= QUESTION_BESIDE_REQUEST
                elif intent == "access" and portable:
                    value *= PORTABILITY_COVERS_ACCESS
                net = value + negative + damp_any
                if net <= 0:
                    continue
                for weight, hit in positives:
                    used.add(hit.cue.key)
                    evidence.setdefault(intent, []).append((weight * net / value, hit))
                if positives[0][1].cue.is_action:
                    used.add(_ACTION_OF[intent])
                scores[intent] += net
                has_action = has_action or intent in ACTION_INTENTS
                portable = portable or intent == "portability"
    if veto > 0:
        scores = {k: v * max(0.0, 1.0 - veto) for k, v in scores.items()}
    return scores, evidence


def _clause_value(intent: str, grouped: dict[str, list[_Hit]], clause_start: int, framed: bool,
                  weak_factor: float, used: set[int | str], own_objects: frozenset[str]
                  ) -> tuple[float, list[tuple[float, _Hit]], float]:
    """(boosted positive score, weighted positive hits, negative sum) of one intent in one
    clause. The phrase cues and the action+object composition are alternatives, not
    additions: the stronger counts, so a phrase that already says it all is not doubled."""
    positives: list[tuple[float, _Hit]] = []
    negative = 0.0
    for hit in grouped.get(intent, ()):
        cue = hit.cue
        if cue.weight < 0:
            negative += cue.weight
        elif cue.key not in used:
            factor = weak_factor if cue.weak else 1.0
            if factor > 0:
                positives.append((cue.weight * factor, hit))
    value = 0.0
    if positives:
        positives = _drop_overlaps(positives)
        value = sum([w for w, _ in positives]) * (FRAME_BOOST if framed else 1.0)
    action_key = _ACTION_OF[intent]
    if intent != "question" and action_key in grouped and action_key not in used:
        composed = _composed(intent, grouped, clause_start, own_objects)
        if composed is not None:
            weight, action, obj, imperative = composed
            boosted = weight * (FRAME_BOOST if framed or imperative else 1.0)
            if boosted > value:
                value, positives = boosted, [(boosted, action), (boosted / 2, obj)]
    return value, positives, negative


def _drop_overlaps(positives: list[tuple[float, _Hit]]) -> list[tuple[float, _Hit]]:
    """Where phrases overlap in the text ("slett" inside "slett meg"), count only the
    strongest, so an editor can add a longer phrase without double counting."""
    if len(positives) == 1:
        return positives
    chosen: list[tuple[float, _Hit]] = []
    for weight, hit in sorted(positives, key=_strongest_first):
        start, end = hit[2], hit[3]
        for _, other in chosen:
            if end > other[2] and start < other[3]:
                break
        else:
            chosen.append((weight, hit))
    return chosen


def _strongest_first(positive: tuple[float, _Hit]) -> tuple[float, int]:
    return -positive[0], positive[1][2]


def _confidence(score: float) -> float:
    return 1.0 - math.exp(-score) if score > 0 else 0.0


def classify(body: str, subject: str = "", default_language: str = "nb", *,
             lexicon: Lexicon | None = None) -> Classification:
    """Language and intents of one message (body already stripped of quotes/signature).
    `lexicon` defaults to intents/ beside the package (load_lexicon())."""
    return read(body, subject, default_language, lexicon=lexicon)[0]


def read(body: str, subject: str = "", default_language: str = "nb", *,
         lexicon: Lexicon | None = None) -> tuple[Classification, list[str]]:
    """classify(), and the folded words of the body (tokens(fold(body))), for the learned model:
    the text is split into words once per message, not once per reader."""
    body = (body or "")[:MAX_SCORED_CHARS]
    if "[ ]" in body:  # a web form's boxes left unticked are options, not what was asked for
        body = _UNTICKED.sub(" ", body)
    subject = _new_subject(subject)
    text = f"{subject}\n\n{body}" if subject else body
    tokens = _SCAN.findall(text)
    language_scores = scores_from_tokens(tokens, text)
    language, language_confidence = decide_language(language_scores, default=default_language)
    if language not in _SCRIPT_LANGUAGE_SET and UNREAD_SCRIPTS.search(text, 0, 4000):
        language, language_confidence = _by_script(text, language_scores, language,
                                                   language_confidence)
    lexicon = lexicon or load_lexicon()
    ids, anchors = _scan(tokens, lexicon, language)
    hits, starts = _find_hits(lexicon, ids, anchors)
    heading = _subject_sentences(starts, len(_SCAN.findall(f"{subject}\n\n"))) if subject else 0
    raw, evidence = _score(hits, starts, lexicon.own_objects, heading)
    top = max(map(raw.__getitem__, ACTION_INTENTS))
    results: list[IntentScore] = []
    for intent in INTENTS:
        score = raw[intent]
        if score <= 0:
            continue
        confidence = _confidence(score)
        if top > 0 and intent != "question" and score < RELATIVE * top:
            confidence *= score / (RELATIVE * top)
        if confidence < SIGNAL * 0.4:
            continue
        results.append(IntentScore(intent, round(confidence, 3),
                                   _evidence_texts(evidence.get(intent, []), text, tokens)))
    results.sort(key=lambda s: s.confidence, reverse=True)
    chosen = tuple(s.intent for s in results if s.confidence >= THRESHOLD)
    not_request = not chosen and any(
        hit[0].intent == NOT_REQUEST or (hit[0].intent == "veto" and hit[0].weight >= 1) for hit in hits)
    unclear = not chosen and not not_request and any(s.confidence >= SIGNAL for s in results)
    triage = "" if chosen or unclear or not_request else _triage_reason(
        hits, raw, text, language, language_confidence, lexicon.languages)
    if triage.startswith("written in") and language_confidence < SURE_TO_NAME:
        language = UNDETERMINED  # the profiles did not find it: the default would be a guess
    lookalikes = frozenset(hit[0].intent for hit in hits
                           if hit[0].weight <= FIRM_LOOKALIKE and hit[0].intent in _LOOKALIKE_SECTIONS)
    operator_intents = frozenset(
        intent for intent in (hit[0].intent.removeprefix(ACTION) for hit in hits
                              if hit[0].own and hit[0].weight > 0) if intent in chosen
    ) if lexicon.has_own and chosen else frozenset()
    classification = Classification(chosen, language, language_confidence, tuple(results),
                                    unclear or bool(triage), triage, not_request, lookalikes,
                                    operator_intents)
    words = fold_words(tokens)
    if words is None:
        return classification, folded_tokens(body)
    return classification, words[len(TOKEN_RE.findall(subject)):] if subject else words


def _by_script(text: str, scores: dict[str, float], language: str, confidence: float
               ) -> tuple[str, float]:
    """A short message mostly written in Cyrillic or Arabic letters is not the default language
    because its few words gave the profiles too little to go on ("Кому ви передавали мою
    адресу?" came out as nb, so its reply would have been in Norwegian): the best-scoring
    language of that script, if any profile saw it, kept below SURE_OF_SCRIPT_LANGUAGE."""
    sample = text[:4000]
    letters = sum(ch.isalpha() for ch in sample)
    for script, pattern in _SCRIPT_OF:
        candidates = SCRIPT_LANGUAGES.get(script)
        if candidates and 2 * len(pattern.findall(sample)) > letters:
            best = max(candidates, key=lambda code: scores.get(code, 0.0))
            if scores.get(best, 0.0) > 0:
                return best, round(min(max(confidence, 0.3), SURE_OF_SCRIPT_LANGUAGE - 0.05), 3)
    return language, confidence


def _triage_reason(hits: list[_Hit], raw: dict[str, float], text: str, language: str,
                   confidence: float, languages: frozenset[str]) -> str:
    """Why a message with no intent above the threshold may still be a request ("" = it is
    not): a request cue of any strength (an intent's phrase, an action on personal data, a
    [possible] word such as "GDPR" or "mine data"), or a script the lexicons read only in part.
    A [not_request] phrase (an order confirmation, an auto-reply, a newsletter) settles it:
    no triage. Runs only for messages without intents, over hits already found."""
    cue = next((hit[0].phrase for hit in hits if hit[0].intent == POSSIBLE), "")
    if cue:
        return f'request cue "{cue}" below the threshold'
    weak = [intent for intent in INTENTS if raw[intent] > 0]
    if weak:
        return "weak " + "/".join(weak) + " cue below the threshold"
    letters = UNREAD_SCRIPTS.findall(text, 0, 4000)
    if len(letters) >= UNREAD_SCRIPT_LETTERS or (
            len(letters) >= FEW_SCRIPT_LETTERS
            and 2 * len(letters) > sum(ch.isalpha() for ch in text[:4000])):
        sample = "".join(letters)
        script = max(_SCRIPT_OF, key=lambda s: len(s[1].findall(sample)))[0]
        if (language not in SCRIPT_LANGUAGES.get(script, ()) or language not in languages
                or confidence < SURE_OF_SCRIPT_LANGUAGE):
            return f"written in {script} script, in a language the lexicons do not read"
    return ""


def _subject_sentences(starts: list[int], subject_tokens: int) -> int:
    """How many of the sentences belong to the subject line (it ends in a blank-line break)."""
    return sum(1 for start in starts if start < subject_tokens)


def _new_subject(subject: str) -> str:
    """The subject as the sender's own words; empty for a reply or forward, whose subject
    was written by whoever started the thread ("SV: Innsyn" on a thank-you note)."""
    subject = " ".join((subject or "")[:1000].split())
    return "" if is_reply_subject(subject) else subject


def _evidence_texts(hits: list[tuple[float, _Hit]], text: str,
                    tokens: list[str]) -> tuple[str, ...]:
    """The matched words as they stand in the message (case, accents and punctuation as
    written), strongest first."""
    texts: list[str] = []
    for _, hit in sorted(hits, key=lambda p: -p[0]):
        surface = _surface(text, tuple(tokens[hit.start:hit.end]))
        if surface and surface not in texts:
            texts.append(surface)
        if len(texts) >= MAX_EVIDENCE:
            break
    return tuple(texts)


def _surface(text: str, words: tuple[str, ...]) -> str:
    """Find the words again in the text with whatever punctuation stood between them
    ("Art. 15(3"), so staff see the passage as the sender wrote it."""
    plain = " ".join(words)
    if plain in text:
        return plain
    pattern = r"[^\w§]*".join(re.escape(w) for w in words)
    found = re.search(pattern, text)
    if found is None:
        return " ".join(words)
    start, end = found.span()
    if end < len(text) and text[end] == ")" and text.count("(", start, end) > text.count(")", start, end):
        end += 1
    return " ".join(text[start:end].split())

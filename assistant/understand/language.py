"""Language detection from function-word and character profiles (intents/languages.toml).

Why profiles and not a model: the inbox is small-company mail in a handful of languages, the
profiles are data a privacy officer can read and extend, and counting known words is fast
enough to run on every message. The hard part is Norwegian bokmål vs nynorsk vs Danish, which
share most words; the profiles give the few words that differ a higher weight ("markers").

Tokens are split here and folded with assistant.text.fold, the one fold every matcher uses.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

from .. import resources
from ..text import fold  # noqa: F401 - re-exported: callers import fold from here

DEFAULT_DIRECTORY = resources.shipped("intents")

# Letters and digits form tokens; "§" is a token of its own so "§ 18" can be a cue.
TOKEN_RE = re.compile(r"[^\W_]+|§")

# Language detection needs only the start of a message: the rest adds time, not certainty.
LANGUAGE_SCAN_CHARS = 3000
MAX_LANGUAGE_TOKENS = 500
CHAR_SCAN_CHARS = 1500  # letters like ø or ä settle a language quickly
COUNT_FROM = 64  # tokens; see scores_from_tokens
MIN_EVIDENCE = 2.0  # below this much profile weight we do not trust any language
DEFAULT_PREFERENCE = 0.8  # the default wins if it scores at least this share of the best


def tokens(text: str) -> list[str]:
    """Split into word tokens the same way for cues and for messages."""
    return TOKEN_RE.findall(text)


_FOLDED_WORDS: dict[str, str | None] = {}
FOLD_CACHE_LIMIT = 200_000


def folded_tokens(text: str) -> list[str]:
    """tokens(fold(text)), several times faster on the second sight of a word: each word is
    folded once and remembered (see fold_words)."""
    folded = fold_words(TOKEN_RE.findall(text))
    return tokens(fold(text)) if folded is None else folded


def fold_words(found: list[str]) -> list[str] | None:
    """The folded words among tokens split from a text (anything that is not a word, such as
    the intent scanner's sentence breaks, is left out). No character outside a word folds into
    a word character (tests/test_language.py checks every code point), so this equals
    tokens(fold(text)), except where a word folds into more or less than one word ("İ" -> "i" +
    a combining dot): then None, and the caller folds the whole text."""
    cache = _FOLDED_WORDS
    try:
        folded = list(map(cache.__getitem__, found))
    except KeyError:
        if len(cache) > FOLD_CACHE_LIMIT:
            cache.clear()
        for token in found:
            if token not in cache:
                cache[token] = _fold_word(token)
        folded = list(map(cache.__getitem__, found))
    if None in folded:
        return None
    return list(filter(None, folded))


def _fold_word(token: str) -> str | None:
    """"" for a token that is no word (left out), None for one that does not fold to one word."""
    if not TOKEN_RE.fullmatch(token):
        return ""
    value = fold(token)
    return value if TOKEN_RE.fullmatch(value) else None


@dataclass(frozen=True)
class LanguageProfiles:
    """Word -> [(language, weight)] plus distinctive characters, built from languages.toml."""

    codes: tuple[str, ...]
    words: dict[str, tuple[tuple[str, float], ...]]  # also "Jeg" and "JEG" for "jeg"
    chars: dict[str, tuple[tuple[str, float], ...]]  # character -> [(language, weight)]
    char_re: re.Pattern[str] | None
    char_cap: float  # no language gets more than this from characters alone
    # words again, as word -> number of its distinct [(language, weight)] entry: counting small
    # numbers is cheaper than counting (hashing) the entries themselves, on every message.
    entry_of: dict[str, int] = field(default_factory=dict)
    entries: tuple[tuple[tuple[str, float], ...], ...] = ()

    def __post_init__(self) -> None:
        if self.words and not self.entry_of:
            numbers: dict[tuple[tuple[str, float], ...], int] = {}
            for word, entry in self.words.items():  # numbered from 1: 0 would read as "no entry"
                self.entry_of[word] = numbers.setdefault(entry, len(numbers) + 1)
            object.__setattr__(self, "entries", ((), *numbers))


def _parse_words(value: object) -> list[str]:
    """Accept either a list of words or one space-separated string (easier to edit)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


PROFILES_FILE = "languages.toml"


def load_profiles(directory: Path | None = None) -> LanguageProfiles:
    """The language profiles: `directory`'s languages.toml, or by default the operator's
    intents folder's if it has one, else the shipped one."""
    if directory is not None:
        return _load_profiles(Path(directory) / PROFILES_FILE)
    return _load_profiles(resources.find("intents", PROFILES_FILE) or DEFAULT_DIRECTORY / PROFILES_FILE)


def read_toml(path: Path) -> dict:
    """A data file as TOML; a mistake raises ValueError as `path:line: what is wrong`, the form
    an editor jumps to and `dsr check` prints."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+)", str(exc))
        where = f"{path}:{found.group(1)}" if found else str(path)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ValueError(f"{where}: invalid TOML: {message}") from None


@lru_cache(maxsize=8)
def _load_profiles(path: Path) -> LanguageProfiles:
    data = read_toml(path)
    settings = data.get("settings", {})
    word_weight = float(settings.get("word_weight", 1.0))
    marker_weight = float(settings.get("marker_weight", 3.0))
    char_weight = float(settings.get("char_weight", 0.5))
    raw: dict[str, dict[str, float]] = {}
    chars: dict[str, list[tuple[str, float]]] = {}
    codes: list[str] = []
    for code, profile in data.items():
        if code == "settings" or not isinstance(profile, dict):
            continue
        codes.append(code)
        for weight, key in ((word_weight, "words"), (marker_weight, "markers")):
            for word in _parse_words(profile.get(key, [])):
                entry = raw.setdefault(word.lower(), {})
                entry[code] = max(entry.get(code, 0.0), weight)
        for char in _parse_words(profile.get("chars", [])):
            chars.setdefault(char.lower(), []).append((code, char_weight))
    words: dict[str, tuple[tuple[str, float], ...]] = {}
    for word, entry in _with_folded_forms(raw).items():
        value = tuple(sorted(entry.items()))
        for form in (word.upper(), word.capitalize(), word):  # tokens keep their case
            words[form] = value
    char_re = re.compile("[" + re.escape("".join(chars)) + "]") if chars else None
    return LanguageProfiles(
        codes=tuple(codes),
        words=words,
        chars={c: tuple(v) for c, v in chars.items()},
        char_re=char_re,
        char_cap=float(settings.get("char_cap", 4.0)),
    )


def _with_folded_forms(raw: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Also accept a word typed without its accents ("ogsa", "hälsningar" -> "halsningar"),
    unless the folded form is itself a word of some profile (Swedish "för" must not become
    English "for")."""
    result = {w: dict(e) for w, e in raw.items()}
    for word, entry in raw.items():
        folded = fold(word)
        if folded != word and folded not in raw:
            target = result.setdefault(folded, {})
            for code, weight in entry.items():
                target[code] = max(target.get(code, 0.0), weight * 0.8)
    return result


def language_scores(text: str, profiles: LanguageProfiles | None = None) -> dict[str, float]:
    """Profile weight per language for the start of the text."""
    sample = text[:LANGUAGE_SCAN_CHARS]
    return scores_from_tokens(TOKEN_RE.findall(sample), sample, profiles)


def scores_from_tokens(words: list[str], sample: str,
                       profiles: LanguageProfiles | None = None) -> dict[str, float]:
    """Scores from tokens already split by a caller (the intent scanner splits once for
    both jobs); only the first MAX_LANGUAGE_TOKENS count."""
    profiles = profiles or load_profiles()
    scores = dict.fromkeys(profiles.codes, 0.0)
    entries = profiles.entries
    numbers = filter(None, map(profiles.entry_of.get, words[:MAX_LANGUAGE_TOKENS]))
    if len(words) > COUNT_FROM:  # a long text repeats its words: count them first
        for number, count in Counter(numbers).items():
            for code, weight in entries[number]:
                scores[code] += weight * count
    else:  # a short one: building a Counter costs more than adding as we go
        for number in numbers:
            for code, weight in entries[number]:
                scores[code] += weight
    if profiles.char_re is not None:
        found = profiles.char_re.findall(sample[:CHAR_SCAN_CHARS].lower())
        if found:
            char_scores = dict.fromkeys(profiles.codes, 0.0)
            chars = profiles.chars
            for char in found:
                for code, weight in chars[char]:
                    char_scores[code] += weight
            for code, value in char_scores.items():
                if value:
                    scores[code] += min(value, profiles.char_cap)
    return scores


def detect_language(text: str, default: str = "nb") -> tuple[str, float]:
    """Best language code and a confidence in [0, 1].

    Short or mixed texts fall back to the organisation's default: answering a Norwegian
    company's customer in Norwegian is the safe mistake, answering in Danish is not.
    """
    return decide_language(language_scores(text or ""), default)


def decide_language(scores: dict[str, float], default: str = "nb") -> tuple[str, float]:
    """Pick a language from profile scores, preferring the default when it is close."""
    ranked = sorted(scores.items(), key=itemgetter(1), reverse=True)
    if not ranked:
        return default, 0.0
    best, top = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    if top < MIN_EVIDENCE:
        return default, round(min(0.3, top / 10), 3)
    confidence = min(1.0, top / 8.0) * (0.4 + 0.6 * (top - second) / top)
    if default in scores and best != default and scores[default] >= DEFAULT_PREFERENCE * top:
        return default, round(confidence * 0.6, 3)
    if confidence < 0.2:
        return default, round(confidence, 3)
    return best, round(confidence, 3)

"""What in a privacy policy must not be repeated to a requester: stale law, dead links, and
statements that contradict the organisation's record of processing.

The rules are data (``policies/stale_law.toml``, found like every policy file: the operator's
policies folder first, then the shipped one), so a privacy officer adds a rule without touching
code. ``check_policy_file`` reports findings as ``file:line: what (why)`` for `dsr policies
check`; ``flagged_sections`` says which sections hold a flagged passage, so a draft never
quotes one.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import resources
from ..text import fold
from .policies import Policy, Section, slugify
from .records import Record

RULES_FILE = "stale_law.toml"


@dataclass(frozen=True)
class Rule:
    id: str
    pattern: re.Pattern[str]
    what: str
    why: str
    near: re.Pattern[str] | None = None
    unless: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Finding:
    path: Path | None
    line: int
    section: str | None   # section id, None for the preamble
    rule: str             # rule id, or "record" for a contradiction with the record
    what: str
    why: str
    excerpt: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.path else f"{self.section or 'preamble'}"
        return f"{where}: {self.what} ({self.why})"


# --------------------------------------------------------------------------- rules


def rules_path() -> Path | None:
    return resources.find("policies", RULES_FILE)


def load_rules(path: Path | None = None) -> tuple[Rule, ...]:
    """The rules in a file (default: the configured policies folders); errors name path:line."""
    path = path or rules_path()
    if path is None:
        return ()
    return _load_rules(Path(path), Path(path).stat().st_mtime)


@lru_cache(maxsize=8)
def _load_rules(path: Path, _mtime: float) -> tuple[Rule, ...]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read rules: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ValueError(f"{path}:{m.group(1) if m else 1}: invalid TOML: {exc}") from None
    headers = [i + 1 for i, line in enumerate(text.splitlines())
               if re.match(r"\s*\[\[\s*rules\s*\]\]", line)]
    rules = []
    for index, raw in enumerate(data.get("rules", [])):
        line = headers[index] if index < len(headers) else 1
        for key in ("id", "pattern", "what", "why"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise ValueError(f"{path}:{line}: a rule needs '{key}'")
        compiled = {}
        for key in ("pattern", "near", "unless"):
            if key in raw:
                try:
                    compiled[key] = re.compile(raw[key], re.IGNORECASE)
                except re.error as exc:
                    raise ValueError(f"{path}:{line}: rule {raw['id']!r}: bad {key}: "
                                     f"{exc}") from None
        rules.append(Rule(id=raw["id"], pattern=compiled["pattern"], what=raw["what"],
                          why=raw["why"], near=compiled.get("near"),
                          unless=compiled.get("unless")))
    return tuple(rules)


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def scan_text(text: str, rules: tuple[Rule, ...]) -> list[tuple[Rule, str]]:
    """(rule, excerpt) for each rule a line of text breaks; one finding per rule and line."""
    out = []
    for rule in rules:
        if rule.unless is not None and rule.unless.search(text):
            continue
        for sentence in _SENTENCE.split(text):
            match = rule.pattern.search(sentence)
            if match and (rule.near is None or rule.near.search(sentence)):
                out.append((rule, sentence.strip()))
                break
    return out


# --------------------------------------------------------------------------- retention periods

_NUMBERS = {"en": 1, "ett": 1, "ei": 1, "én": 1, "to": 2, "tre": 3, "fire": 4, "fem": 5,
            "seks": 6, "sju": 7, "syv": 7, "åtte": 8, "ni": 9, "ti": 10, "elleve": 11,
            "tolv": 12, "femten": 15, "tjue": 20, "tretti": 30}
_UNITS = {"dag": 1 / 30.4375, "uke": 7 / 30.4375, "måned": 1.0, "mnd": 1.0, "år": 12.0}
_NUM = r"(\d+(?:[.,]\d+)?|" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + ")"
_DURATION = re.compile(
    rf"\b{_NUM}(?:\s*[-–]\s*{_NUM})?\s+(dag(?:er|ene)?|uke(?:r|ne)?|måned(?:er|ene)?|mnd|år)\b",
    re.IGNORECASE)
_RETENTION_WORDS = re.compile(r"lagr|oppbevar|slett|logg|arkiv", re.IGNORECASE)


def _number(token: str) -> float:
    token = token.lower()
    return _NUMBERS[token] if token in _NUMBERS else float(token.replace(",", "."))


def retention_periods(text: str) -> list[tuple[float, float, str]]:
    """(low, high, words) in months for each period a sentence about keeping data names."""
    out = []
    for sentence in _SENTENCE.split(text):
        if not _RETENTION_WORDS.search(sentence):
            continue
        for m in _DURATION.finditer(sentence):
            unit = next(v for k, v in _UNITS.items() if m.group(3).lower().startswith(k))
            low = _number(m.group(1)) * unit
            high = _number(m.group(2)) * unit if m.group(2) else low
            out.append((low, high, m.group(0)))
    return out


def _matches(low: float, high: float, months: float) -> bool:
    slack = 0.05 * max(months, 0.25)
    return low - slack <= months <= high + slack


def record_contradictions(section: Section, record: Record | None) -> list[tuple[str, str, str]]:
    """(what, why, words) for each retention period in the section that no activity the record
    links to it has (or that the record does not know at all)."""
    if record is None:
        return []
    periods = retention_periods(section.text)
    if not periods:
        return []
    linked = [a for a in record.activities if section.id in a.sections]
    out = []
    for low, high, words in periods:
        with_period = [a for a in linked if a.retention.period]
        if any(_matches(low, high, a.retention.months()) for a in with_period):
            continue
        if not linked:
            out.append((f"retention period '{words}' is in no activity of the record",
                        f"link this section to its activity in {record.path.name} "
                        "('sections') and give the activity that period", words))
            continue
        record_says = "; ".join(f"{a.id}: {a.retention.text.nb}" for a in linked) or "nothing"
        out.append((f"retention period '{words}' contradicts the record",
                    f"{record.path.name} says {record_says}", words))
    return out


# --------------------------------------------------------------------------- sections, files


def flagged_sections(policy: Policy, record: Record | None = None,
                     rules: tuple[Rule, ...] | None = None) -> dict[str, list[Finding]]:
    """Section id -> its findings, for every section that holds a flagged passage. A draft
    never quotes these sections."""
    rules = load_rules() if rules is None else rules
    return _flagged(policy, record, rules)


@lru_cache(maxsize=64)
def _flagged(policy: Policy, record: Record | None, rules: tuple[Rule, ...]
             ) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for section in policy.sections:
        findings = [Finding(None, 0, section.id, rule.id, rule.what, rule.why, excerpt)
                    for line in section.text.split("\n")
                    for rule, excerpt in scan_text(line, rules)]
        findings += [Finding(None, 0, section.id, "record", what, why, words)
                     for what, why, words in record_contradictions(section, record)]
        if findings:
            out[section.id] = findings
    return out


def is_flagged(section: Section, policy: Policy, record: Record | None = None) -> bool:
    return section.id in flagged_sections(policy, record)


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*$")


def check_policy_file(path: Path, policy: Policy, record: Record | None = None,
                      rules: tuple[Rule, ...] | None = None) -> list[Finding]:
    """Every finding in one policy file, with the line it is on."""
    rules = load_rules() if rules is None else rules
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    # Skip the front matter; follow the sections as load_policy numbers them.
    start = 0
    if lines and lines[0].strip() == "+++":
        start = next((i for i in range(1, len(lines)) if lines[i].strip() == "+++"), 0) + 1
    seen: dict[str, int] = {}
    section_at: dict[int, str] = {}
    current: str | None = None
    findings: list[Finding] = []
    in_comment = False
    for index in range(start, len(lines)):
        line = lines[index]
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) >= 2:
            base = slugify(heading.group(2))
            seen[base] = seen.get(base, 0) + 1
            current = base if seen[base] == 1 else f"{base}-{seen[base]}"
            section_at.setdefault(index + 1, current)
            continue
        text = re.sub(r"<!--.*?-->", "", line)
        if in_comment:
            if "-->" in line:
                in_comment = False
            continue
        if "<!--" in text:
            in_comment = True
            text = text.split("<!--")[0]
        for rule, excerpt in scan_text(text, rules):
            findings.append(Finding(Path(path), index + 1, current, rule.id, rule.what,
                                    rule.why, excerpt))
    sections = {s.id: s for s in policy.sections}
    for number, section_id in section_at.items():
        section = sections.get(section_id)
        if section is None:
            continue
        for what, why, words in record_contradictions(section, record):
            line = _line_of(lines, number, words)
            findings.append(Finding(Path(path), line, section_id, "record", what, why, words))
    findings.sort(key=lambda f: f.line)
    return findings


def _line_of(lines: list[str], heading_line: int, words: str) -> int:
    key = fold(words)
    for index in range(heading_line, len(lines)):
        if _HEADING.match(lines[index]) and index + 1 != heading_line:
            break
        if key in fold(re.sub(r"<!--.*?-->", "", lines[index])):
            return index + 1
    return heading_line

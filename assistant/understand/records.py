"""Each organisation's record of processing (GDPR Art. 30) as data a privacy officer edits.

The record lives next to the policy, ``policies/<org>.record.toml`` (format in
policies/README.md). Replies take their direct answers from it: an access reply gives the
Art. 15(1)(a-h) and 15(2) content per processing activity, an erasure reply names the provision
that keeps data, a question about retention is answered with the activity's period and law.

Every text a reply may show comes in bokmål (``nb``) and English (``en``); a reply in nynorsk
reads the bokmål text. An entry the officer inferred from the law rather than read in the policy
carries ``confirm = true`` and a ``note`` saying why: staff see it in `dsr check` and in
docs/records.md until they have confirmed it.

A mistake stops loading with ``path:line: what is wrong``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import resources

RECORD_SUFFIX = ".record.toml"
LANGUAGES = ("nb", "en")
ROLES = ("processor", "recipient", "controller", "authority")
# Art. 6(1)(a)-(f), Art. 9(2)(a)-(j): "6(1)(b)", "6(1)(c)", "9(2)(f)".
_ARTICLE = re.compile(r"^(6)\(1\)\(([a-f])\)$|^(9)\(2\)\(([a-j])\)$")
# ISO 8601 period, years/months/weeks/days: P5Y, P6W, P4M, P7D.
_PERIOD = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class RecordError(ValueError):
    """A record file that cannot be used; the message starts with `path:line:`."""


@dataclass(frozen=True)
class Text:
    """One text in both languages; nynorsk and the Scandinavian languages read bokmål."""

    nb: str
    en: str

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.nb


@dataclass(frozen=True)
class Texts:
    """A list of short texts (categories of data) in both languages, item for item."""

    nb: tuple[str, ...]
    en: tuple[str, ...]

    def get(self, language: str) -> tuple[str, ...]:
        return self.en if language == "en" else self.nb


@dataclass(frozen=True)
class LegalBasis:
    articles: tuple[str, ...]  # "6(1)(b)", ...
    text: Text                 # the basis in plain words
    law: str = ""              # a national provision the basis rests on (e.g. for 6(1)(c))

    def cite(self, language: str) -> str:
        """'personvernforordningen art. 6 nr. 1 bokstav b og c' / 'Article 6(1)(b) and (c) GDPR'."""
        groups: dict[tuple[str, str], list[str]] = {}
        for article in self.articles:
            m = _ARTICLE.match(article)
            key = (m.group(1), "1") if m.group(1) else (m.group(3), "2")
            groups.setdefault(key, []).append(m.group(2) or m.group(4))
        word = " og " if language != "en" else " and "
        parts = []
        for (number, paragraph), letters in groups.items():
            if language != "en":
                listed = ", ".join(letters[:-1]) + word + letters[-1] if len(letters) > 1 \
                    else letters[0]
                parts.append(f"art. {number} nr. {paragraph} bokstav {listed}")
            else:
                listed = ", ".join(f"({x})" for x in letters[:-1]) + word + f"({letters[-1]})" \
                    if len(letters) > 1 else f"({letters[0]})"
                parts.append(f"Article {number}({paragraph}){listed}")
        joined = word.join(parts)
        if language == "en":
            return f"{joined} GDPR"
        return f"personvernforordninga {joined}" if language == "nn" else \
            f"personvernforordningen {joined}"


@dataclass(frozen=True)
class Retention:
    text: Text                 # the period in words, with its start ("fem år etter …")
    period: str = ""           # ISO 8601 (P5Y, P6W); empty when only a criterion is known
    law: str = ""              # the provision that obliges keeping ("bokføringsloven § 13")
    why: Text | None = None    # the reason in plain words (the criterion, when no law)
    confirm: bool = False
    note: str = ""
    line: int = 0

    def months(self) -> float | None:
        return period_months(self.period) if self.period else None


@dataclass(frozen=True)
class Recipient:
    name: str
    role: str                  # processor | recipient | controller | authority
    what: Text                 # what they do with the data
    location: Text             # "Irland (EØS)" / "Ireland (EEA)"
    eea: bool
    safeguard: Text | None = None  # required when eea is false (Art. 44-49, Art. 15(2))
    confirm: bool = False
    note: str = ""
    line: int = 0


@dataclass(frozen=True)
class Automated:
    decisions: bool = False    # decisions based solely on automated processing (Art. 22)
    profiling: bool = False
    logic: Text | None = None  # required when either is true (Art. 15(1)(h))


@dataclass(frozen=True)
class Activity:
    id: str
    name: Text
    purpose: Text
    legal_basis: LegalBasis
    categories: Texts
    from_subject: bool          # collected from the person
    other_sources: Text | None  # where else from (Art. 14(2)(f), Art. 15(1)(g))
    systems: tuple[str, ...]
    retention: Retention
    recipients: tuple[Recipient, ...] = ()
    marketing: bool = False     # direct marketing: its systems are suppressed, never erased
    automated: Automated = Automated()
    sections: tuple[str, ...] = ()  # policy section ids that describe this activity
    confirm: bool = False
    note: str = ""
    line: int = 0


@dataclass(frozen=True)
class Record:
    org: str
    controller: str
    activities: tuple[Activity, ...]
    path: Path
    copy_route: Text | None = None  # how the copy of the data reaches the person

    def activity(self, activity_id: str) -> Activity:
        for activity in self.activities:
            if activity.id == activity_id:
                return activity
        raise KeyError(f"{self.org}: no activity {activity_id!r}")

    def systems(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for a in self.activities for s in a.systems))

    def suppression_systems(self) -> tuple[str, ...]:
        """Systems that hold only direct-marketing (and suppression) data: an erasure
        suppresses the person there instead of deleting them, so marketing stays stopped."""
        marketing = {s for a in self.activities if a.marketing for s in a.systems}
        other = {s for a in self.activities if not a.marketing for s in a.systems}
        return tuple(s for s in self.systems() if s in marketing and s not in other)

    def activities_in(self, system: str) -> tuple[Activity, ...]:
        """Activities that keep data in a system; "TMG (Telemagic Group)" is "TMG"."""
        key = system_key(system)
        return tuple(a for a in self.activities if key in {system_key(s) for s in a.systems})

    def recipients(self) -> tuple[Recipient, ...]:
        """Every recipient once (by name), in the order they first appear."""
        seen: dict[str, Recipient] = {}
        for activity in self.activities:
            for recipient in activity.recipients:
                seen.setdefault(recipient.name, recipient)
        return tuple(seen.values())

    def processors(self) -> tuple[Recipient, ...]:
        return tuple(r for r in self.recipients() if r.role == "processor")

    def transfers(self) -> tuple[Recipient, ...]:
        """Recipients outside the EEA (Art. 15(2)): each with its safeguard."""
        return tuple(r for r in self.recipients() if not r.eea)

    def to_confirm(self) -> list[str]:
        """What staff must still confirm: 'activity', 'activity.retention', 'activity.X'."""
        out = []
        for a in self.activities:
            if a.confirm:
                out.append(a.id)
            if a.retention.confirm:
                out.append(f"{a.id}.retention")
            out.extend(f"{a.id}.{r.name}" for r in a.recipients if r.confirm)
        return out


def system_key(name: str) -> str:
    """A system's name for comparing lists: case and a trailing "(…)" explanation ignored."""
    return re.sub(r"\s*\(.*\)\s*$", "", name.strip()).lower()


def period_months(period: str) -> float:
    m = _PERIOD.match(period)
    if not m or not any(m.groups()):
        raise ValueError(f"bad period {period!r}")
    years, months, weeks, days = (int(g) if g else 0 for g in m.groups())
    return years * 12 + months + weeks * 7 / 30.4375 + days / 30.4375


# --------------------------------------------------------------------------- finding


def record_name(org: str) -> str:
    return f"{org}{RECORD_SUFFIX}"


def record_path(org: str, policy_path: Path | None = None) -> Path | None:
    """The organisation's record: next to its policy file first, then the operator's policies
    folder, then the shipped one (resources.find, like every other data file)."""
    if policy_path is not None:
        beside = Path(policy_path).with_name(record_name(org))
        shipped = resources.shipped("policies")
        # Beside the operator's own policy it wins; beside the shipped policy, the operator's
        # policies folder may still override it (file by file, like every data file).
        if beside.is_file() and beside.parent.resolve() != shipped.resolve():
            return beside
    return resources.find("policies", record_name(org))


def find_record(org: str, policy_path: Path | None = None) -> Record | None:
    path = record_path(org, policy_path)
    return load_record(path) if path is not None else None


def record_paths() -> list[Path]:
    """Every record over the policy folders, file by file (the operator's wins)."""
    return resources.merged_files(resources.layers("policies"), f"*{RECORD_SUFFIX}")


# --------------------------------------------------------------------------- loading


class _Lines:
    """Line numbers for keys: tomllib gives none, so find them in the text by position."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [i for i, line in enumerate(self.lines)
                        if re.match(r"\s*\[\[\s*activities\s*\]\]", line)]

    def activity(self, index: int) -> int:
        return self.headers[index] + 1 if index < len(self.headers) else 1

    def key(self, index: int | None, key: str, nth: int = 0) -> int:
        """Line of `key` (a bare key or a [activities.key] table) inside activity `index`."""
        start = self.headers[index] if index is not None and index < len(self.headers) else 0
        end = (self.headers[index + 1] if index is not None and index + 1 < len(self.headers)
               else len(self.lines))
        if index is None and self.headers:
            end = self.headers[0]
        pattern = re.compile(rf"\s*(\[\[?\s*activities\.{re.escape(key)}\s*\]\]?|"
                             rf"{re.escape(key)}\s*[.=])")
        hits = [i for i in range(start, end) if pattern.match(self.lines[i])]
        if hits:
            return hits[min(nth, len(hits) - 1)] + 1
        return start + 1


def load_record(path: Path) -> Record:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read record: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise RecordError(f"{path}:{m.group(1) if m else 1}: invalid TOML: {exc}") from None
    lines = _Lines(text)

    def fail(line: int, message: str) -> RecordError:
        return RecordError(f"{path}:{line}: {message}")

    org = data.get("org")
    if not isinstance(org, str) or not _ID.match(org):
        raise fail(lines.key(None, "org"), "a record needs 'org', the organisation id")
    expected = path.name.removesuffix(RECORD_SUFFIX)
    if expected != org:
        raise fail(lines.key(None, "org"), f"org {org!r} does not match the file name "
                                           f"({expected}{RECORD_SUFFIX})")
    controller = data.get("controller")
    if not isinstance(controller, str) or not controller.strip():
        raise fail(lines.key(None, "controller"), "a record needs 'controller', the name of "
                                                  "the organisation responsible")
    copy_route = None
    if "copy_route" in data:
        copy_route = _text(data["copy_route"], lambda m: fail(lines.key(None, "copy_route"), m),
                           "copy_route")
    unknown = set(data) - {"org", "controller", "copy_route", "activities"}
    if unknown:
        raise fail(lines.key(None, sorted(unknown)[0]), f"unknown key {sorted(unknown)[0]!r}")
    raw = data.get("activities")
    if not isinstance(raw, list) or not raw:
        raise fail(1, "a record needs at least one [[activities]] entry")
    activities: list[Activity] = []
    for index, entry in enumerate(raw):
        activity = _activity(entry, index, lines, fail)
        if any(a.id == activity.id for a in activities):
            raise fail(lines.key(index, "id"), f"activity id {activity.id!r} is used twice")
        activities.append(activity)
    return Record(org=org, controller=controller.strip(), activities=tuple(activities),
                  path=path, copy_route=copy_route)


ACTIVITY_KEYS = {"id", "name", "purpose", "legal_basis", "categories", "source", "systems",
                 "retention", "recipients", "marketing", "automated", "sections", "confirm",
                 "note"}
REQUIRED = ("id", "name", "purpose", "legal_basis", "categories", "source", "systems",
            "retention")


def _activity(entry: Any, index: int, lines: _Lines, fail: Any) -> Activity:
    here = lines.activity(index)
    if not isinstance(entry, dict):
        raise fail(here, "an [[activities]] entry must be a table")

    def at(key: str):
        line = lines.key(index, key)
        return lambda message: fail(line, message)

    for key in REQUIRED:
        if key not in entry:
            raise fail(here, f"activity {entry.get('id', index + 1)!r} needs '{key}'")
    unknown = set(entry) - ACTIVITY_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(lines.key(index, key), f"unknown key {key!r} in an activity; use "
                                          f"{', '.join(sorted(ACTIVITY_KEYS))}")
    activity_id = entry["id"]
    if not isinstance(activity_id, str) or not _ID.match(activity_id):
        raise at("id")(f"activity id {activity_id!r} must be lowercase letters, digits, - or _")
    name = _text(entry["name"], at("name"), "name")
    purpose = _text(entry["purpose"], at("purpose"), "purpose")
    basis = _basis(entry["legal_basis"], at("legal_basis"))
    categories = _texts(entry["categories"], at("categories"), "categories")
    source = entry["source"]
    if not isinstance(source, dict) or not isinstance(source.get("from_subject"), bool):
        raise at("source")("'source' needs from_subject = true or false (and nb/en texts "
                           "naming any other source)")
    other = None
    if "nb" in source or "en" in source:
        other = _text({k: source.get(k) for k in LANGUAGES}, at("source"), "source")
    if not source["from_subject"] and other is None:
        raise at("source")("data not collected from the person needs the source in nb and en "
                           "(Art. 14(2)(f), 15(1)(g))")
    systems = entry["systems"]
    if not isinstance(systems, list) or not all(isinstance(s, str) and s.strip()
                                                for s in systems):
        raise at("systems")("'systems' must be a list of system names")
    retention = _retention(entry["retention"], lines.key(index, "retention"), at("retention"))
    recipients = []
    raw_recipients = entry.get("recipients", [])
    if not isinstance(raw_recipients, list):
        raise at("recipients")("'recipients' must be a list of [[activities.recipients]]")
    for nth, raw in enumerate(raw_recipients):
        line = lines.key(index, "recipients", nth)
        recipients.append(_recipient(raw, line, lambda m, line=line: fail(line, m)))
    automated = _automated(entry.get("automated", {}), at("automated"))
    sections = entry.get("sections", [])
    if not isinstance(sections, list) or not all(isinstance(s, str) for s in sections):
        raise at("sections")("'sections' must be a list of policy section ids")
    for key in ("marketing", "confirm"):
        if not isinstance(entry.get(key, False), bool):
            raise at(key)(f"'{key}' must be true or false")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise at("note")("'note' must be a string")
    if entry.get("confirm") and not note.strip():
        raise at("confirm")("confirm = true needs a 'note' saying what was inferred and why")
    return Activity(
        id=activity_id, name=name, purpose=purpose, legal_basis=basis, categories=categories,
        from_subject=source["from_subject"], other_sources=other,
        systems=tuple(s.strip() for s in systems), retention=retention,
        recipients=tuple(recipients), marketing=entry.get("marketing", False),
        automated=automated, sections=tuple(sections), confirm=entry.get("confirm", False),
        note=note.strip(), line=here,
    )


def _text(value: Any, fail: Any, what: str) -> Text:
    if not isinstance(value, dict):
        raise fail(f"'{what}' must be a table with nb and en texts")
    missing = [lang for lang in LANGUAGES
               if not isinstance(value.get(lang), str) or not value[lang].strip()]
    if missing:
        raise fail(f"'{what}' needs a text in {' and '.join(missing)} (every text in bokmål "
                   "and English)")
    return Text(nb=" ".join(value["nb"].split()), en=" ".join(value["en"].split()))


def _texts(value: Any, fail: Any, what: str) -> Texts:
    if not isinstance(value, dict):
        raise fail(f"'{what}' must be a table with nb and en lists")
    out = {}
    for lang in LANGUAGES:
        items = value.get(lang)
        if not isinstance(items, list) or not items or not all(
                isinstance(i, str) and i.strip() for i in items):
            raise fail(f"'{what}' needs a non-empty list in {lang}")
        out[lang] = tuple(" ".join(i.split()) for i in items)
    if len(out["nb"]) != len(out["en"]):
        raise fail(f"'{what}': nb has {len(out['nb'])} items, en {len(out['en'])}: they must "
                   "match item for item")
    return Texts(**out)


def _basis(value: Any, fail: Any) -> LegalBasis:
    if not isinstance(value, dict):
        raise fail("'legal_basis' must be a table: article, nb, en")
    articles = value.get("article")
    if isinstance(articles, str):
        articles = [articles]
    if not isinstance(articles, list) or not articles or not all(
            isinstance(a, str) and _ARTICLE.match(a.replace(" ", "")) for a in articles):
        raise fail("'legal_basis.article' must name GDPR articles like \"6(1)(b)\" or "
                   "[\"6(1)(b)\", \"6(1)(c)\"]")
    law = value.get("law", "")
    if not isinstance(law, str):
        raise fail("'legal_basis.law' must be a string")
    text = _text({k: value.get(k) for k in LANGUAGES}, fail, "legal_basis")
    return LegalBasis(tuple(a.replace(" ", "") for a in articles), text, law.strip())


def _retention(value: Any, line: int, fail: Any) -> Retention:
    if not isinstance(value, dict):
        raise fail("'retention' must be a table: nb, en, and period and/or law or why")
    text = _text({k: value.get(k) for k in LANGUAGES}, fail, "retention")
    period = value.get("period", "")
    if period and (not isinstance(period, str) or not _PERIOD.match(period)
                   or not any(_PERIOD.match(period).groups())):
        raise fail(f"'retention.period' {period!r} must be an ISO 8601 period like P5Y, "
                   "P6W, P4M, P7D")
    law = value.get("law", "")
    if not isinstance(law, str):
        raise fail("'retention.law' must be a string such as \"bokføringsloven § 13\"")
    why = _text(value["why"], fail, "retention.why") if "why" in value else None
    if not law and why is None:
        raise fail("'retention' needs the law behind it ('law') or the criterion ('why'): "
                   "Art. 15(1)(d)")
    confirm = value.get("confirm", False)
    note = value.get("note", "")
    if not isinstance(confirm, bool) or not isinstance(note, str):
        raise fail("'retention.confirm' is true or false, 'retention.note' a string")
    if confirm and not note.strip():
        raise fail("retention confirm = true needs a 'note' saying what was inferred and why")
    return Retention(text=text, period=period, law=law.strip(), why=why, confirm=confirm,
                     note=note.strip(), line=line)


def _recipient(value: Any, line: int, fail: Any) -> Recipient:
    if not isinstance(value, dict):
        raise fail("a recipient must be a table")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("a recipient needs 'name'")
    role = value.get("role")
    if role not in ROLES:
        raise fail(f"recipient {name!r}: 'role' must be one of {', '.join(ROLES)}")
    what = _text(value.get("what"), fail, f"{name}: what")
    location = _text(value.get("location"), fail, f"{name}: location")
    eea = value.get("eea")
    if not isinstance(eea, bool):
        raise fail(f"recipient {name!r}: 'eea' must be true or false (is the data inside the "
                   "EEA?)")
    safeguard = None
    if "safeguard" in value:
        safeguard = _text(value["safeguard"], fail, f"{name}: safeguard")
    if not eea and safeguard is None:
        raise fail(f"recipient {name!r} is outside the EEA: it needs 'safeguard' in nb and en "
                   "(Art. 44-49, 15(2))")
    confirm = value.get("confirm", False)
    note = value.get("note", "")
    if confirm and not (isinstance(note, str) and note.strip()):
        raise fail(f"recipient {name!r}: confirm = true needs a 'note'")
    return Recipient(name=name.strip(), role=role, what=what, location=location, eea=eea,
                     safeguard=safeguard, confirm=bool(confirm), note=str(note).strip(),
                     line=line)


def _automated(value: Any, fail: Any) -> Automated:
    if not isinstance(value, dict):
        raise fail("'automated' must be a table: decisions, profiling, nb, en")
    decisions = value.get("decisions", False)
    profiling = value.get("profiling", False)
    if not isinstance(decisions, bool) or not isinstance(profiling, bool):
        raise fail("'automated.decisions' and 'automated.profiling' are true or false")
    logic = None
    if decisions or profiling or "nb" in value or "en" in value:
        logic = _text({k: value.get(k) for k in LANGUAGES}, fail, "automated")
    return Automated(decisions=decisions, profiling=profiling, logic=logic)


def check_systems(record: Record, known: Iterable[str]) -> None:
    """Every system the record names is one of the organisation's `systems` (config), so the
    erasure checklist and the record speak of the same places."""
    known_keys = {k.strip().lower(): k for k in known}
    for activity in record.activities:
        for system in activity.systems:
            if system.lower() not in known_keys:
                raise RecordError(
                    f"{record.path}:{activity.line}: activity {activity.id!r} names system "
                    f"{system!r}, which is not one of the organisation's systems "
                    f"({', '.join(known_keys.values()) or 'none'})")

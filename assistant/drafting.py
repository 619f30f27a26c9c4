"""Draft the replies staff review before anything is sent.

All wording lives in ``mail_templates/<language>/`` (Jinja2, plain text) and
``mail_templates/<language>/labels.toml`` (month names, names of the rights), so a privacy
officer can change the tone or add a language without touching code. This module only decides
which template to use, which policy sections to quote, and in what order.

A reply is composed, not pasted (DESIGN.md "Replies"): a direct answer first, from the
organisation's record of processing (assistant/understand/records.py), then at most one short
quote from the policy, never from a section that holds stale law or a dead link
(policy_check.flagged_sections), and never Norwegian policy text in an English reply.

- access: the Art. 15(1)(a-h) and 15(2) content per processing activity, from the record;
- erasure: written from the settled checklist (`erasure_checklist`): deleted where, kept under
  which provision until when (and restricted until then), suppressed where, who was told
  (Art. 19); until every system is settled the draft says it is not ready;
- question: one direct sentence from the record when it answers, at most one short quote, or,
  when both are silent, a plain statement and a marked line for staff to fill in.
- rectification: what staff recorded as corrected (`corrected`), and that recipients are told
  (Art. 19); until something is recorded, a line for staff;
- objection: the record's activities by what an objection does to them, each with its legal
  basis (Art. 21(1) test and restriction meanwhile, Art. 18(1)(d); marketing stops at once,
  Art. 21(3); consent withdrawn; contract and legal obligation outside Art. 21);
- refusal (`draft_refusal`): the reason and both routes, Datatilsynet and the courts (Art. 12(4)).

A line for staff is written between double brackets, ``[[ … ]]``: a draft holding one is not
ready to send (`Draft.ready`). A draft never contains personal data about the requester beyond
the name it greets.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, Template

from assistant import resources
from assistant.understand.policies import (
    INTENT_TERMS,
    Policy,
    Section,
    search,
    sections_for_intent,
    stem,
    words,
)
from assistant.understand.policy_check import flagged_sections
from assistant.understand.records import Activity, Record, find_record, system_key
from assistant.vocabulary import INTENTS, RIGHTS_ORDER

# The shipped folders. The drafts' default is resources.layers("mail_templates"): the
# operator's templates folder (config [data] templates_dir) over the shipped one.
DEFAULT_TEMPLATES = resources.shipped("mail_templates")
DEFAULT_POLICIES = resources.shipped("policies")
# One folder, several (first wins, file by file), or None for the configured layers.
TemplateDirs = Path | Sequence[Path] | None

DEFAULT_LANGUAGE = "nb"
# Languages a Norwegian reader answers in bokmål when no template folder exists for them.
SCANDINAVIAN = frozenset({"nb", "nn", "no", "sv", "da"})
_ALIASES = {"nob": "nb", "nor": "nb", "no": "nb", "nno": "nn", "swe": "sv", "dan": "da",
            "eng": "en"}

QUOTES_PER_INTENT = 1
QUOTES_PER_QUESTION = 1
QUOTE_MAX_WORDS = 60
STAFF_MARK = "[["  # a line for staff: the draft is not ready while it holds one
QUOTE_WIDTH = 76
QUOTE_RELATIVE_CUT = 0.5


@dataclass(frozen=True)
class OrgInfo:
    id: str
    name: str
    addresses: tuple[str, ...]
    systems: tuple[str, ...]
    language: str = "nb"
    retention_law: tuple[str, ...] = ()

    @classmethod
    def from_policy(cls, policy: Policy, addresses: tuple[str, ...] | None = None) -> OrgInfo:
        """Build from the policy's front matter; config may override the addresses."""
        return cls(
            id=policy.org,
            name=policy.name,
            addresses=tuple(addresses) if addresses is not None else policy.addresses,
            systems=policy.systems,
            language=policy.language,
            retention_law=policy.retention_law,
        )


@dataclass(frozen=True)
class Draft:
    kind: str
    language: str
    subject: str
    body: str
    quoted_sections: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        """False while the body holds a line for staff (`[[ … ]]`): an erasure not settled in
        every system, a question nobody has answered yet, a record missing."""
        return STAFF_MARK not in self.body


@dataclass(frozen=True)
class Settled:
    """One system of an erasure checklist, settled: `done` (erased), `kept` (under `law`, until
    `until`) or `suppressed` (marketing stopped; the suppression entry is kept). `pending` means
    not settled yet."""

    system: str
    outcome: str
    law: str = ""
    until: date | None = None

    OUTCOMES = ("done", "kept", "suppressed", "pending")


ChecklistInput = Mapping[str, Any] | Sequence[Settled] | None


# --------------------------------------------------------------------------- language, dates


def _normalise_language(code: str | None) -> str:
    primary = re.split(r"[-_]", (code or "").strip().lower())[0]
    return _ALIASES.get(primary, primary)


def template_dirs(templates_dir: TemplateDirs = None) -> tuple[Path, ...]:
    """The template folders to use, first wins: as given, or the configured layers."""
    if templates_dir is None:
        return resources.layers("mail_templates")
    if isinstance(templates_dir, str | Path):
        return (Path(templates_dir),)
    return tuple(Path(d) for d in templates_dir)


def _has_templates(templates_dir: TemplateDirs, language: str) -> bool:
    if not language:
        return False
    folders = [d / language for d in template_dirs(templates_dir)]
    # A folder's listing is read again only when the folder changed (a template added or
    # removed changes its mtime): every draft asks this several times.
    return any(_folder_has_templates(str(folder), _mtime_ns(folder)) for folder in folders)


def _mtime_ns(folder: Path) -> int | None:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return None


@lru_cache(maxsize=256)
def _folder_has_templates(folder: str, mtime_ns: int | None) -> bool:
    path = Path(folder)
    return mtime_ns is not None and path.is_dir() and any(path.glob("*.j2"))


def languages(templates_dir: TemplateDirs = None) -> tuple[str, ...]:
    """The languages we can answer in: folders with templates, in any layer."""
    found = {p.name for d in template_dirs(templates_dir) if d.is_dir() for p in d.iterdir()
             if p.is_dir() and any(p.glob("*.j2"))}
    return tuple(sorted(found))


def reply_language(request_language: str, templates_dir: TemplateDirs = None) -> str:
    """The language we answer in: the request's own if we have templates for it; nynorsk,
    Swedish and Danish readers get bokmål; anyone else gets English if it exists."""
    templates_dir = template_dirs(templates_dir)
    language = _normalise_language(request_language)
    if _has_templates(templates_dir, language):
        return language
    if not language or language in SCANDINAVIAN:
        return DEFAULT_LANGUAGE
    return "en" if _has_templates(templates_dir, "en") else DEFAULT_LANGUAGE


def labels_path(dirs: tuple[Path, ...], language: str) -> Path:
    """The labels.toml in use for a language: the first layer's that has one."""
    found = [d / language / "labels.toml" for d in dirs]
    return next((p for p in found if p.is_file()), found[-1])


@lru_cache(maxsize=32)
def _labels(dirs: tuple[Path, ...], language: str) -> dict[str, Any]:
    path = labels_path(dirs, language)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read labels: {exc}") from exc


def format_date(d: date, language: str, templates_dir: TemplateDirs = None) -> str:
    """Write a date as a reader of that language expects: '2. mars 2026', '2 March 2026'."""
    dirs = template_dirs(templates_dir)
    labels = _labels(dirs, reply_language(language, dirs))
    month = labels["months"][d.month - 1]
    return labels["date_format"].format(day=d.day, month=month, year=d.year)


# --------------------------------------------------------------------------- rendering

_HTML_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>", re.DOTALL)


def _no_html(value: Any) -> Any:
    """Mail is plain text: anything that looks like an HTML tag in inserted values is dropped."""
    if value is None:
        return ""
    return _HTML_TAG.sub("", value) if isinstance(value, str) else value


def quote_block(text: str, width: int = QUOTE_WIDTH) -> str:
    """Mark policy text as a quotation ('> ' lines), rewrapped but word for word."""
    out: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            if out and out[-1] != ">":
                out.append(">")
            continue
        indent = re.match(r"\s*", line).group(0).replace("\t", "    ")
        wrapped = textwrap.wrap(line.strip(), width=max(20, width - 2 - len(indent)),
                                break_long_words=False, break_on_hyphens=False)
        out.extend(f"> {indent}{part}" for part in wrapped)
    while out and out[-1] == ">":
        out.pop()
    return "\n".join(out)


def _join_and(items: Any, word: str) -> str:
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


@lru_cache(maxsize=16)
def environment(dirs: tuple[Path, ...], language: str) -> Environment:
    """The Jinja environment of one language: a template in an earlier folder wins over the
    shipped one of the same name, the rest come from the shipped folder."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(d / language)) for d in dirs]),
        autoescape=False,  # plain-text mail; HTML is stripped from values by finalize
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_no_html,
    )
    labels = _labels(dirs, language)
    env.filters["quote"] = quote_block
    env.filters["join_and"] = lambda items: _join_and(items, labels.get("and", "and"))
    env.globals["labels"] = labels
    return env


def _tidy(text: str) -> str:
    """Templates stay readable; the mail gets no trailing spaces and no runs of blank lines."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _render(templates_dir: tuple[Path, ...], language: str, name: str, context: dict[str, Any]
            ) -> tuple[str, str]:
    env = environment(templates_dir, language)
    template: Template = env.get_template(name)
    ctx = template.new_context(context)
    subject = "".join(template.blocks["subject"](ctx)).strip()
    body = "".join(template.blocks["body"](template.new_context(context)))
    return " ".join(subject.split()), _tidy(body)


def _base_context(org: OrgInfo, ref: str, language: str, templates_dir: tuple[Path, ...]
                  ) -> dict[str, Any]:
    return {
        "org": org,
        "ref": ref,
        "contact": org.addresses[0] if org.addresses else "",
        "language": language,
        "fmt": lambda d: format_date(d, language, templates_dir) if d else "",
        "name": "",
    }


# --------------------------------------------------------------------------- drafts


def draft_acknowledgement(
    org: OrgInfo, ref: str, due: date, language: str, code: str | None,
    verification_needed: bool, templates_dir: TemplateDirs = None,
) -> Draft:
    """Receipt with the reference, the date we answer by and, if needed, how to prove identity."""
    templates_dir = template_dirs(templates_dir)
    lang = reply_language(language, templates_dir)
    context = _base_context(org, ref, lang, templates_dir) | {
        "due": format_date(due, lang, templates_dir),
        "code": code,
        "verification_needed": verification_needed,
    }
    subject, body = _render(templates_dir, lang, "acknowledgement.txt.j2", context)
    return Draft("acknowledgement", lang, subject, body, ())


def draft_verification(
    org: OrgInfo, ref: str, language: str, code: str | None, due: date | None = None,
    templates_dir: TemplateDirs = None,
) -> Draft:
    """Ask the requester to confirm who they are (a one-time code, or a reply from the address
    we already know) without asking for ID copies by default."""
    templates_dir = template_dirs(templates_dir)
    lang = reply_language(language, templates_dir)
    context = _base_context(org, ref, lang, templates_dir) | {
        "code": code,
        "due": format_date(due, lang, templates_dir) if due else "",
    }
    subject, body = _render(templates_dir, lang, "verification.txt.j2", context)
    return Draft("verification", lang, subject, body, ())


def draft_extension(
    org: OrgInfo, ref: str, language: str, new_due: date, reason: str,
    templates_dir: TemplateDirs = None,
) -> Draft:
    """Tell the requester within the first month that we need more time, why, and until when."""
    templates_dir = template_dirs(templates_dir)
    lang = reply_language(language, templates_dir)
    context = _base_context(org, ref, lang, templates_dir) | {
        "new_due": format_date(new_due, lang, templates_dir),
        "reason": reason.strip(),
    }
    subject, body = _render(templates_dir, lang, "extension.txt.j2", context)
    return Draft("extension", lang, subject, body, ())


def draft_refusal(
    org: OrgInfo, ref: str, language: str, reason: str, intents: Sequence[str] = (),
    requester_name: str | None = None, templates_dir: TemplateDirs = None,
) -> Draft:
    """We do not act on the request (Art. 12(4)): the reasons staff gave, and both routes the
    requester has, a complaint to Datatilsynet (Art. 77) and the courts (Art. 79). Sent without
    delay, at the latest within one month of receipt."""
    templates_dir = template_dirs(templates_dir)
    lang = reply_language(language, templates_dir)
    labels = _labels(templates_dir, lang)
    asked = [labels["intents"][i] for i in _ordered_intents(
        [i for i in intents if i in INTENTS]) if i != "question"]
    context = _base_context(org, ref, lang, templates_dir) | {
        "reason": " ".join(reason.split()),
        "requested": asked,
        "name": " ".join((requester_name or "").split()),
    }
    subject, body = _render(templates_dir, lang, "refusal.txt.j2", context)
    return Draft("refusal", lang, subject, body, ())


def _ordered_intents(intents: list[str]) -> list[str]:
    unknown = [i for i in intents if i not in INTENTS]
    if unknown:
        raise ValueError(f"unknown intent(s) {unknown}; use {', '.join(INTENTS)}")
    return [i for i in RIGHTS_ORDER if i in intents]


# --------------------------------------------------------------------------- quoting


def _quotable(policy: Policy | None, language: str, record: Record | None) -> list[Section]:
    """Sections a reply in `language` may quote: with text, in the reply's language (a
    Norwegian policy is never pasted into an English reply; nynorsk readers read the bokmål
    policy), and holding no flagged passage (stale law, dead link, contradiction)."""
    if policy is None:
        return []
    if _norwegian(policy.language) != _norwegian(language):
        return []
    flagged = flagged_sections(policy, record)
    return [s for s in policy.sections if s.text.strip() and s.id not in flagged]


def _norwegian(code: str) -> str:
    return "nb" if code in {"nb", "nn", "no"} else code


def _sentences(text: str) -> list[str]:
    return [p for p in re.split(r"(?<=[.!?:])\s+|\n+", text) if p.strip()]


def excerpt(text: str, query: str = "", max_words: int = QUOTE_MAX_WORDS) -> str:
    """The part of a section worth quoting, word for word: the whole text when it is short, else
    the sentences that best match the query (in their order), cut at whole sentences, with
    '[…]' where text was left out."""
    if len(text.split()) <= max_words:
        return text
    sentences = _sentences(text)
    terms = {stem(w) for w in words(query)}
    scores = [len(terms & {stem(w) for w in words(s)}) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    chosen = [best]
    budget = max_words - len(sentences[best].split())
    for i in range(best + 1, len(sentences)):
        n = len(sentences[i].split())
        if n > budget or (scores[i] == 0 and scores[best] > 0):
            break
        chosen.append(i)
        budget -= n
    if budget < 0:  # one sentence longer than the limit: cut at a word, marked
        return " ".join(sentences[best].split()[:max_words]) + " […]"
    out = " ".join(sentences[i] for i in chosen)
    if chosen[0] > 0:
        out = "[…] " + out
    if chosen[-1] < len(sentences) - 1:
        out += " […]"
    return out


@dataclass(frozen=True)
class Quote:
    """A section quoted in a reply: its heading and the excerpt."""

    id: str
    heading: str
    text: str


# sections_for_intent depends on the policy, the intent and k only, and a policy object is one
# version of its file (workflow re-reads a changed file into a new object): the ranking is
# remembered per object, so drafting at intake does not re-stem the intent's words per case.
_INTENT_SECTIONS: dict[tuple[int, str, int], tuple[Policy, tuple[tuple[Section, float], ...]]] = {}
_INTENT_SECTIONS_MAX = 1024


def _sections_for_intent(policy: Policy, intent: str, k: int) -> list[tuple[Section, float]]:
    key = (id(policy), intent, k)
    hit = _INTENT_SECTIONS.get(key)
    if hit is not None and hit[0] is policy:
        return list(hit[1])
    found = tuple(sections_for_intent(policy, intent, k=k))
    if len(_INTENT_SECTIONS) >= _INTENT_SECTIONS_MAX:
        _INTENT_SECTIONS.clear()
    _INTENT_SECTIONS[key] = (policy, found)  # the object is kept: its id is not reused meanwhile
    return list(found)


def _quote_for_intent(policy: Policy | None, intent: str, language: str,
                      record: Record | None, taken: set[str]) -> list[Quote]:
    if policy is None:
        return []
    allowed = {s.id for s in _quotable(policy, language, record)}
    hits = [s for s, _ in _sections_for_intent(policy, intent, k=10)
            if s.id in allowed and s.id not in taken]
    return [Quote(s.id, s.heading, excerpt(s.text, INTENT_TERMS.get(intent, "")))
            for s in hits[:QUOTES_PER_INTENT]]


def _described(policy: Policy | None, intent: str) -> bool:
    """Whether the policy speaks to the right at all (flagged or not)."""
    return bool(policy and _sections_for_intent(policy, intent, k=1))


# --------------------------------------------------------------------------- the record, per language


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _activity_view(activity: Activity, language: str, labels: dict[str, Any]) -> dict[str, Any]:
    """One processing activity in the reply's language: what Art. 15(1)(a)-(h) asks for."""
    basis = activity.legal_basis
    retention = activity.retention
    return {
        "id": activity.id,
        "name": activity.name.get(language),
        "name_lower": _lower_first(activity.name.get(language)),
        "purpose": activity.purpose.get(language),
        "basis": basis.text.get(language),
        "basis_cite": basis.cite(language) + (f", {basis.law}" if basis.law else ""),
        "categories": list(activity.categories.get(language)),
        "from_subject": activity.from_subject,
        "other_sources": activity.other_sources.get(language) if activity.other_sources else "",
        "recipients": [_recipient_view(r, language, labels) for r in activity.recipients],
        "retention": retention.text.get(language),
        "retention_law": retention.law,
        "retention_why": retention.why.get(language) if retention.why else "",
        "profiling": activity.automated.profiling,
        "decisions": activity.automated.decisions,
        "logic": activity.automated.logic.get(language) if activity.automated.logic else "",
        "systems": list(activity.systems),
        "marketing": activity.marketing,
    }


def _recipient_view(recipient: Any, language: str, labels: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": recipient.name,
        "role": labels["roles"][recipient.role],
        "what": recipient.what.get(language),
        "location": recipient.location.get(language),
        "eea": recipient.eea,
        "safeguard": recipient.safeguard.get(language) if recipient.safeguard else "",
    }


def _access_view(record: Record | None, language: str, labels: dict[str, Any],
                 activities: Sequence[str] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    chosen = [a for a in record.activities if activities is None or a.id in activities]
    views = [_activity_view(a, language, labels) for a in chosen]
    transfers = [_recipient_view(r, language, labels) for r in record.transfers()
                 if any(r in a.recipients for a in chosen)]
    return {
        "activities": views,
        "transfers": transfers,
        "profiling": [v for v in views if v["profiling"] or v["decisions"]],
        "decisions": any(v["decisions"] for v in views),
        "systems": list(dict.fromkeys(s for a in chosen for s in a.systems)),
        "copy_route": record.copy_route.get(language) if record.copy_route else "",
    }


# --------------------------------------------------------------------------- objection

# Art. 21(1): the right to object reaches processing based on Art. 6(1)(e) or (f).
_OBJECTABLE = frozenset({"6(1)(e)", "6(1)(f)"})


def _objection_view(record: Record | None, language: str, labels: dict[str, Any]
                    ) -> dict[str, Any] | None:
    """The record's activities sorted by what an objection does to them: direct marketing
    stops at once, whatever its basis (Art. 21(2)-(3)); processing based on legitimate or public
    interest is weighed (Art. 21(1)) and restricted meanwhile (Art. 18(1)(d)); consent is
    withdrawn (Art. 7(3)); contract and legal obligation are outside Art. 21."""
    if record is None:
        return None
    view: dict[str, list[dict[str, Any]]] = {"marketing": [], "weighed": [], "consent": [],
                                             "other": []}
    for activity in record.activities:
        articles = set(activity.legal_basis.articles)
        shown = _activity_view(activity, language, labels)
        if activity.marketing:
            view["marketing"].append(shown)
        elif articles & _OBJECTABLE:
            view["weighed"].append(shown)
        elif "6(1)(a)" in articles:
            view["consent"].append(shown)
        else:
            view["other"].append(shown)
    return view


# --------------------------------------------------------------------------- erasure


_LEGAL_CLAIMS_ONLY = re.compile(r"produktansvar|forbrukerkj[øo]p", re.IGNORECASE)


def settled_checklist(checklist: ChecklistInput) -> list[Settled] | None:
    """The checklist as Settled rows. Accepts Settled rows, or a mapping system -> "done",
    "suppressed", "pending", ("kept", law, until), {"outcome": …, "law": …, "until": …}."""
    if checklist is None:
        return None
    rows: list[Settled] = []
    items = checklist.items() if isinstance(checklist, Mapping) else (
        (row.system, row) for row in checklist)
    for system, value in items:
        if isinstance(value, Settled):
            row = value
        elif isinstance(value, str):
            row = Settled(system, value)
        elif isinstance(value, Mapping):
            row = Settled(system, value.get("outcome") or value.get("state", "pending"),
                          value.get("law") or "", value.get("until"))
        elif isinstance(value, tuple | list) and value:
            row = Settled(system, value[0], *(list(value[1:3])))
        else:
            raise ValueError(f"erasure checklist: cannot read the entry for {system!r}")
        if row.outcome not in Settled.OUTCOMES:
            raise ValueError(f"erasure checklist: {system!r} is {row.outcome!r}; use "
                             f"{', '.join(Settled.OUTCOMES)}")
        if row.outcome == "kept" and not row.law.strip():
            raise ValueError(f"erasure checklist: {system!r} is kept: name the law")
        rows.append(row)
    return rows


def _erasure_view(org: OrgInfo, record: Record | None, checklist: list[Settled] | None,
                  language: str, labels: dict[str, Any], templates_dir: tuple[Path, ...],
                  told: Sequence[str] | None) -> dict[str, Any]:
    systems = list(org.systems) or (list(record.systems()) if record else [])
    by_system = {row.system.strip().lower(): row for row in checklist or []}
    pending = [s for s in systems
               if by_system.get(s.lower(), Settled(s, "pending")).outcome == "pending"]
    ready = checklist is not None and not pending
    view: dict[str, Any] = {"ready": ready, "pending": pending, "settled": checklist is not None,
                            "suggestions": _suggestions(systems, record, language)}
    if not ready:
        return view
    rows = [by_system[s.lower()] for s in systems]
    rows += [r for r in checklist or [] if r.system.lower() not in {s.lower() for s in systems}]
    kept = []
    for row in (r for r in rows if r.outcome == "kept"):
        activities = record.activities_in(row.system) if record else ()
        claims_only = bool(_LEGAL_CLAIMS_ONLY.search(row.law))
        kept.append({
            "system": row.system,
            "law": "" if claims_only else row.law.strip(),
            "legal_claims": claims_only,
            "until": format_date(row.until, language, templates_dir) if row.until else "",
            "retention": next((a.retention.text.get(language) for a in activities
                               if a.retention.law and a.retention.law.split("§")[0].strip().lower()
                               in row.law.lower()), ""),
            "what": [_lower_first(a.name.get(language)) for a in activities
                     if a.retention.law] or [_lower_first(a.name.get(language))
                                             for a in activities],
        })
    done = [r.system for r in rows if r.outcome == "done"]
    suppressed = [r.system for r in rows if r.outcome == "suppressed"]
    if told is None and record is not None:
        told = [r.name for system in done for a in record.activities_in(system)
                for r in a.recipients if r.role in {"processor", "recipient", "controller"}]
    view |= {
        "done": done, "kept": kept, "suppressed": suppressed,
        "told": list(dict.fromkeys(told or [])),
        "marketing": bool(suppressed) or bool(record and any(a.marketing
                                                              for a in record.activities)),
    }
    return view


def _suggestions(systems: list[str], record: Record | None, language: str) -> list[dict]:
    """What the record says each system needs, for staff settling the checklist."""
    out = []
    suppress = {system_key(s) for s in record.suppression_systems()} if record else set()
    for system in systems:
        activities = record.activities_in(system) if record else ()
        laws = sorted({a.retention.law for a in activities if a.retention.law})
        if system_key(system) in suppress:
            kind = "suppress"
        elif laws:
            kind = "keep"
        else:
            kind = "erase"
        out.append({"system": system, "kind": kind, "laws": laws,
                    "marketing": any(a.marketing for a in activities)})
    return out


# --------------------------------------------------------------------------- questions


_ASPECTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE)) for name, pattern in (
        ("location", r"hvor (lagres|lagrer|er .* lagret|ligger)|kvar (vert|blir) .*lagra|"
                     r"where .*(stor|kept|held|located)|utlandet|abroad|usa\b|utenfor (eøs|eu)|"
                     r"outside the (eea|eu)|\bserver"),
        ("retention", r"hvor lenge|kor lenge|lagringstid|oppbevar|how long|retention|retain|"
                      r"keep|kept|slett(es|er) .*(når|etter)|hur länge|hvor længe"),
        ("recipients", r"\bdele[rs]?\b|deler dere|hvem (får|har tilgang|ser)|share|sell|selge|"
                       r"tredjepart|third part|databehandler|processor|leverandør|videre til"),
        ("basis", r"grunnlag|lovlig|rettslig|legal basis|lawful|hjemmel"),
        ("purpose", r"hvorfor|kvifor|formål|\bwhy\b|purpose|brukes? til|brukt til|bruker dere|"
                    r"used for|use .* for"),
        ("categories", r"hvilke (person)?opplysninger|kva opplysningar|what (personal )?"
                       r"(data|information)|hva (lagrer|registrerer|har) dere"),
    ))

# Words that say what is asked, not what it is about.
_QUESTION_NOISE = frozenset(words(
    "lagre lagrer lagres lagret lagring oppbevare oppbevarer oppbevaring slette sletter slettes "
    "keep kept store stored retention delete opplysninger personopplysninger data information "
    "informasjon lenge long bruke bruker brukes brukt used dele deler share formål purpose "
    "hvorfor grunnlag basis dere deres your yours mine mitt min"))


def _activity_terms(activity: Activity) -> set[str]:
    texts = [activity.name.nb, activity.name.en, " ".join(activity.systems),
             " ".join(activity.categories.nb), " ".join(activity.categories.en),
             " ".join(r.name for r in activity.recipients)]
    return {w for w in words(" ".join(texts)) if len(w) >= 4} - _QUESTION_NOISE


# An activity's terms and their stems, per activity object (a record is one version of its
# file, re-read into new objects when the file changes): every question drafted needs them.
_ACTIVITY_STEMS: dict[int, tuple[Activity, set[str], set[str]]] = {}


def _activity_stems(activity: Activity) -> tuple[set[str], set[str]]:
    hit = _ACTIVITY_STEMS.get(id(activity))
    if hit is not None and hit[0] is activity:
        return hit[1], hit[2]
    terms = _activity_terms(activity)
    stems = {stem(t) for t in terms}
    if len(_ACTIVITY_STEMS) >= 4096:
        _ACTIVITY_STEMS.clear()
    _ACTIVITY_STEMS[id(activity)] = (activity, terms, stems)  # kept: its id is not reused
    return terms, stems


def _match_activity(record: Record | None, question: str) -> Activity | None:
    """The activity a question is about: its name, systems, data or recipients named in the
    question (compounds count: 'telefonopptak' is about 'opptak')."""
    if record is None or not question.strip():
        return None
    asked = [w for w in words(question[:2000]) if len(w) >= 4 and w not in _QUESTION_NOISE]
    best, best_score = None, 0
    for activity in record.activities:
        terms, stems = _activity_stems(activity)
        score = sum(1 for w in asked if stem(w) in stems or (len(w) >= 5 and any(
            len(t) >= 5 and (t in w or w in t) for t in terms)))
        if score > best_score:
            best, best_score = activity, score
    return best


def _aspect(question: str) -> str | None:
    for name, pattern in _ASPECTS:
        if pattern.search(question):
            return name
    return None


def _answer_view(policy: Policy | None, record: Record | None, question: str, language: str,
                 labels: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    """One direct answer from the record, at most one short quote, or a plain 'we do not say'
    with a line for staff."""
    question = question or ""
    aspect = _aspect(question)
    activity = _match_activity(record, question)
    answer: dict[str, Any] = {"aspect": None, "activity": None, "quote": None,
                              "recipients": [], "transfers": [], "activities": []}
    if record is not None and aspect in {"recipients", "location"} and activity is None:
        answer["aspect"] = f"all_{aspect}"
        answer["recipients"] = [_recipient_view(r, language, labels) for r in record.recipients()
                                if r.role != "authority"]
        answer["transfers"] = [_recipient_view(r, language, labels) for r in record.transfers()]
    elif record is not None and aspect == "retention" and activity is None:
        # "How long do you keep my data?": every activity's period, from the record.
        answer["aspect"] = "all_retention"
        answer["activities"] = [_activity_view(a, language, labels) for a in record.activities]
    elif activity is not None:
        answer["aspect"] = aspect or "purpose"
        answer["activity"] = _activity_view(activity, language, labels)
    quotable = {s.id: s for s in _quotable(policy, language, record)}
    if policy is not None and quotable:
        hits = [s for s, _ in search(policy, question, k=5) if s.id in quotable]
        if activity is not None:
            linked = [s for s in hits if s.id in activity.sections]
            hits = linked or ([] if answer["aspect"] else hits)
        elif answer["aspect"]:
            hits = []  # the record answered it for every activity: a quote would pick one
        hits = [s for s in hits if s.id not in taken]
        if hits:
            section = hits[0]
            answer["quote"] = Quote(section.id, section.heading, excerpt(section.text, question))
    answer["silent"] = answer["aspect"] is None and answer["quote"] is None
    # The policy may speak to it in Norwegian while the reply is in English: say so to staff.
    answer["policy_hint"] = ""
    if answer["silent"] and policy is not None and policy.sections:
        # The policy may speak to it where we may not quote it (in Norwegian under an English
        # reply, or in a passage `dsr policies check` flags): tell staff where to look.
        hint = [s for s, _ in search(policy, question, k=1)]
        answer["policy_hint"] = hint[0].heading if hint else ""
    return answer


# --------------------------------------------------------------------------- the reply


def _items(policy: Policy | None, record: Record | None, intents: list[str],
           question: str | None, language: str, labels: dict[str, Any],
           ) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """One block per intent; access and erasure come from the record, not from quotes; a
    section is quoted once at most."""
    taken: set[str] = set()
    quoted: list[str] = []
    items = []
    for intent in intents:
        item: dict[str, Any] = {
            "intent": intent,
            "template": f"{intent}.txt.j2",
            "label": labels["intents"][intent],
            "heading": labels["headings"][intent],
            "sections": [],
            "quoted_before": [],
            "described": _described(policy, intent),
        }
        if intent == "question":
            item["answer"] = _answer_view(policy, record, question or "", language, labels, taken)
            quotes = [item["answer"]["quote"]] if item["answer"]["quote"] else []
        elif intent in {"access", "erasure"} and record is not None:
            quotes = []  # the record answers; the policy is not pasted
        else:
            quotes = _quote_for_intent(policy, intent, language, record, taken)
        item["sections"] = quotes
        taken.update(q.id for q in quotes)
        quoted.extend(q.id for q in quotes)
        items.append(item)
    return items, tuple(quoted)


def _suppression_view(checklist: Mapping[str, str] | None) -> dict[str, Any]:
    """The opt-out confirmation says what was stopped only where staff ticked it (Art. 21(3))."""
    if checklist is None:
        return {"given": False, "stopped": [], "pending": []}
    return {"given": True,
            "stopped": [system for system, state in checklist.items() if state == "done"],
            "pending": [system for system, state in checklist.items() if state != "done"]}


def draft_reply(
    org: OrgInfo, policy: Policy | None, ref: str, intents: list[str], language: str, due: date,
    question: str | None = None, extended_due: date | None = None,
    extension_reason: str | None = None, templates_dir: TemplateDirs = None,
    verified: bool = False, *, record: Record | None = None,
    requester_name: str | None = None, erasure_checklist: ChecklistInput = None,
    access_activities: Sequence[str] | None = None, told: Sequence[str] | None = None,
    corrected: Sequence[str] | None = None, suppression: Mapping[str, str] | None = None,
) -> Draft:
    """The answer to a request: one mail covering every intent. No intents means we did not
    understand the request: ask, and list the rights.

    `record` is the organisation's record of processing (default: found by the org id, like a
    policy). `verified` says the requester's identity is confirmed. `requester_name` is greeted.
    `erasure_checklist` is the settled checklist (system -> done | suppressed |
    ("kept", law, until) | pending, or Settled rows); None means not settled yet, and the
    erasure part then says it is not ready. `access_activities` limits an access reply to the
    activities that concern this person (default: all). `told` names the recipients told of
    the erasure (Art. 19; default: the record's recipients of the systems erased or kept).
    `corrected` lists what staff corrected (Art. 16); until something is, the rectification
    part holds a line for staff. `suppression` is the marketing suppression checklist (system ->
    pending | done): the opt-out part says marketing was stopped where staff ticked it, and
    holds a line for staff while a system is pending; None: no checklist (the general words)."""
    templates_dir = template_dirs(templates_dir)
    lang = reply_language(language, templates_dir)
    ordered = _ordered_intents(list(intents))
    labels = _labels(templates_dir, lang)
    if record is None:
        record = find_record(org.id)
    shown_due = extended_due or due
    context = _base_context(org, ref, lang, templates_dir) | {
        "due": format_date(shown_due, lang, templates_dir),
        "extended_due": format_date(extended_due, lang, templates_dir) if extended_due else "",
        "extension_reason": (extension_reason or "").strip(),
        "policy_known": policy is not None,
        "verified": verified,
        "name": " ".join((requester_name or "").split()),
        "record_known": record is not None,
    }
    if not ordered:
        subject, body = _render(templates_dir, lang, "unclear.txt.j2", context)
        return Draft("unclear", lang, subject, body, ())
    items, quoted = _items(policy, record, ordered, question, lang, labels)
    context |= {
        "items": items, "intents": ordered, "only_question": ordered == ["question"],
        "access": _access_view(record, lang, labels, access_activities),
        "erasure": _erasure_view(org, record, settled_checklist(erasure_checklist), lang,
                                 labels, templates_dir, told),
        "objection": _objection_view(record, lang, labels),
        "corrected": [" ".join(c.split()) for c in corrected or () if c.strip()],
        "suppression": _suppression_view(suppression),
    }
    subject, body = _render(templates_dir, lang, "reply.txt.j2", context)
    return Draft("+".join(ordered), lang, subject, body, quoted)

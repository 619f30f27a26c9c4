"""`dsr check`: the configuration and every data file it points at, validated before use.

Why: policies, lexicons and templates are files a privacy officer edits by hand. A typo there
must stop the program at start with one line an editor can jump to (`path:line: what is wrong`),
not surface weeks later as a reply that silently quotes nothing or a traceback in the worker.
Every command that classifies or drafts runs the same check first; the result is remembered per
process, so it costs one load of the data the command needs anyway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError

from . import drafting, resources
from .config import Organization, Settings
from .understand import learned
from .understand.intents import lexicon_files, load_lexicon
from .understand.language import load_profiles, read_toml
from .understand.policies import INTENTS, Policy, load_policy
from .understand.policy_check import Finding, check_policy_file, load_rules, rules_path
from .understand.records import Record, RecordError, check_systems, load_record, record_path

# What every reply language needs: the mails the product sends, one block per right, the
# shared macros and the words (labels.toml) the drafting code asks for.
TOP_LEVEL_TEMPLATES = ("acknowledgement", "verification", "reply", "unclear", "extension",
                       "refusal", "escalation", "digest")
REQUIRED_TEMPLATES = (*TOP_LEVEL_TEMPLATES, *INTENTS, "_macros")
LABEL_TABLES = ("intents", "headings")
# Lexicon files that are not a language of their own.
SHARED_LEXICONS = frozenset({"common", "compose", "frame", "languages"})


class CheckError(Exception):
    """One problem, as one line: `path:line: what is wrong` (line left out when unknown)."""


@dataclass(frozen=True)
class OrgReport:
    id: str
    policy: Path | None
    sections: dict[str, int] = field(default_factory=dict)  # intent -> quotable sections
    record: Record | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    organisations: tuple[OrgReport, ...]
    lexicon_languages: tuple[str, ...]
    lexicon_files: int
    template_languages: tuple[str, ...]
    templates: int
    model: str
    seconds: float
    rules: tuple[Path | None, int] = (None, 0)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for org in self.organisations for w in org.warnings)

    def summary(self) -> str:
        """What an operator wants to see after an edit: which files are in use, and that the
        policies still speak to the rights."""
        lines = [f"dsr check: all well ({self.seconds:.2f} s)", "organisations:"]
        for org in self.organisations:
            lines.append(f"  {org.id:<15} {org.policy or 'no policy (rights stated in plain words)'}")
            if org.policy is not None:
                counts = ", ".join(f"{i} {org.sections.get(i, 0)}" for i in INTENTS)
                lines.append(f"  {'':<15} sections per intent: {counts}")
            if org.record is not None:
                lines.extend(f"  {'':<15} {line}" for line in _record_summary(org.record))
        lines.append(f"lexicons: {self.lexicon_files} files; languages: "
                     f"{', '.join(self.lexicon_languages)}")
        lines.append(f"templates: {self.templates} in {len(self.template_languages)} languages: "
                     f"{', '.join(self.template_languages)}")
        lines.append(f"learned model: {self.model}")
        lines.append(f"stale-law rules: {self.rules[1]} in {self.rules[0] or 'none'}")
        if self.warnings:
            lines.append("warnings:")
            lines.extend(f"  {w}" for w in self.warnings)
        return "\n".join(lines)


def _record_summary(record: Record) -> list[str]:
    """The record at a glance: activities with retention, what is suppressed not erased, what
    leaves the EEA, and how many entries staff must still confirm."""
    out = [f"record: {record.path} ({len(record.activities)} activities, "
           f"{len(record.to_confirm())} entries to confirm)"]
    for a in record.activities:
        law = f", {a.retention.law}" if a.retention.law else ""
        mark = " [confirm]" if a.confirm or a.retention.confirm else ""
        out.append(f"  {a.id}: {a.name.en}; retention: {a.retention.text.en}{law}; systems: "
                   f"{', '.join(a.systems) or 'none named'}{mark}")
    if record.suppression_systems():
        out.append(f"  suppressed, not erased: {', '.join(record.suppression_systems())}")
    for r in record.transfers():
        out.append(f"  outside the EEA: {r.name} ({r.location.en}; {r.safeguard.en})")
    return out


def run_checks(settings: Settings) -> Report:
    """Check everything the settings point at; raise CheckError on the first problem."""
    started = time.perf_counter()
    organisations = tuple(check_policy(settings, org) for org in settings.organizations)
    lexicon_languages, files = check_lexicons()
    template_languages, templates = check_templates(_sample_policy(settings, organisations))
    model = check_model()
    rules = check_rules()
    return Report(organisations, lexicon_languages, files, template_languages, templates, model,
                  time.perf_counter() - started, rules)


_done: dict[tuple[Any, ...], Report] = {}


def check_once(settings: Settings) -> Report:
    """run_checks, remembered per process for the same settings, folders and working folder
    (a policy path may be relative to it): `dsr serve` and each CLI command pay for it once."""
    key = (settings.model_dump_json(), settings.config_dir, Path.cwd(), resources.overrides())
    if key not in _done:
        _done[key] = run_checks(settings)
    return _done[key]


# --------------------------------------------------------------------------- policies


def check_policy(settings: Settings, org: Organization) -> OrgReport:
    """The organisation's policy exists and parses; count the sections it has per right."""
    if not org.policy:
        return OrgReport(org.id, None)
    path = settings.policy_path(org)
    if path is None:
        looked = resources.policy_candidates(org.policy, settings.config_dir,
                                             settings.resolve_path(settings.data.policies_dir))
        raise CheckError(f"{_config_where(settings, org.policy)}: organizations.{org.id}.policy: "
                         f"policy file {org.policy!r} not found (looked in "
                         f"{', '.join(str(p.parent) for p in looked)})")
    policy = _load(load_policy, path)
    record, warnings = check_record(org, policy, path)
    warnings = (*warnings, *_placeholder_warnings(settings, org, policy))
    return OrgReport(org.id, path, _sections_per_intent(policy), record, tuple(warnings))


def check_record(org: Organization, policy: Policy, policy_path: Path
                 ) -> tuple[Record | None, tuple[str, ...]]:
    """The organisation's record of processing, next to its policy: it parses (every text in
    bokmål and English, the required fields), names only the organisation's systems and only
    sections the policy has. No record is a warning: replies then state the rights without
    the Art. 15 details, which staff must add."""
    path = record_path(org.id, policy_path)
    if path is None:
        return None, (f"{org.id}: no record of processing ({org.id}.record.toml next to "
                      f"{policy_path.name}): access and erasure replies cannot give the "
                      "Art. 15 details",)
    record = _load(load_record, path)
    try:
        check_systems(record, org.systems)
    except RecordError as exc:
        raise CheckError(str(exc)) from None
    ids = {s.id for s in policy.sections}
    for activity in record.activities:
        for section in activity.sections:
            if section not in ids:
                raise CheckError(f"{path}:{activity.line}: activity {activity.id!r} names "
                                 f"section {section!r}, which {policy_path.name} does not have")
    return record, ()


def _placeholder_warnings(settings: Settings, org: Organization, policy: Policy
                          ) -> tuple[str, ...]:
    """An address the policy itself never names is probably a placeholder (DESIGN.md: the
    InfraComfort and Plania policies name none): replies are signed with it, so say so."""
    named = {a.lower() for a in policy.addresses}
    text = " ".join(s.text for s in policy.sections).lower()
    out = []
    for address in org.addresses:
        if address.lower() not in named and address.lower() not in text:
            out.append(f"{_config_where(settings, address, 'addresses')}: organizations.{org.id}."
                       f"addresses: {address} is not named in {org.policy}: a placeholder? "
                       "Replies are signed with it; replace it with a working address")
    return tuple(out)


def policy_findings(settings: Settings, orgs: list[Organization]
                    ) -> list[tuple[str, list[Finding]]]:
    """`dsr policies check`: per organisation with a policy, its findings (stale law, dead
    links, contradictions with the record)."""
    rules = _load(load_rules, rules_path()) if rules_path() else ()
    out = []
    for org in orgs:
        path = settings.policy_path(org)
        if path is None:
            continue
        policy = _load(load_policy, path)
        record_file = record_path(org.id, path)
        record = _load(load_record, record_file) if record_file else None
        out.append((org.id, check_policy_file(path, policy, record, rules)))
    return out


def check_rules() -> tuple[Path | None, int]:
    path = rules_path()
    if path is None:
        return None, 0
    return path, len(_load(load_rules, path))


def _sections_per_intent(policy: Policy) -> dict[str, int]:
    counts = dict.fromkeys(INTENTS, 0)
    for section in policy.sections:
        if section.text.strip():
            for intent in section.intents:
                counts[intent] += 1
    return counts


def _config_where(settings: Settings, value: str, key: str = "policy") -> str:
    """`file:line` of the config line that holds `value`: the operator's file if it names it,
    else the embedded defaults."""
    for path in (settings.config_file, resources.default_config()):
        if path is None:
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, start=1):
            if re.match(rf"\s*{key}\s*=", line) and value in line:
                return f"{path}:{number}"
    return str(settings.config_file or resources.default_config())


def _sample_policy(settings: Settings, organisations: tuple[OrgReport, ...]) -> Policy | None:
    """A real policy for the trial renders, so quoting is exercised too."""
    path = next((o.policy for o in organisations if o.policy is not None), None)
    return load_policy(path) if path else None


# --------------------------------------------------------------------------- lexicons


def check_lexicons() -> tuple[tuple[str, ...], int]:
    """Every lexicon file parses, has known sections and phrases that compile; the language
    profiles load. Returns the lexicon languages and how many files are in use."""
    layers = resources.layers("intents")
    files = lexicon_files(layers)
    profiles = _load(lambda _: load_profiles(), layers[0] / "languages.toml")
    _load(lambda _: load_lexicon(), layers[0])
    stems = {p.stem for p in files} - SHARED_LEXICONS
    return tuple(sorted(stems & set(profiles.codes))), len(files)


# --------------------------------------------------------------------------- templates


def check_templates(policy: Policy | None) -> tuple[tuple[str, ...], int]:
    """Per reply language: labels.toml complete, every reply kind present, every template
    compiles, and each mail renders with sample values. Returns the languages and the count."""
    dirs = drafting.template_dirs()
    languages = drafting.languages(dirs)
    if not languages:
        raise CheckError(f"{dirs[-1]}: no reply language: no folder with *.j2 templates")
    count = 0
    for language in languages:
        _check_labels(drafting.labels_path(dirs, language))
        count += _check_template_files(dirs, language)
        _trial_render(dirs, language, policy)
    return languages, count


def _check_labels(path: Path) -> None:
    if not path.is_file():
        raise CheckError(f"{path}: missing: every reply language needs its labels.toml")
    labels = _load(read_toml, path)
    months = labels.get("months")
    if not isinstance(months, list) or len(months) != 12:
        raise CheckError(f"{path}: 'months' must list the twelve month names")
    if not isinstance(labels.get("date_format"), str):
        raise CheckError(f"{path}: 'date_format' must be a string like \"{{day}}. {{month}} {{year}}\"")
    for table in LABEL_TABLES:
        missing = [i for i in INTENTS if not isinstance(labels.get(table, {}).get(i), str)]
        if missing:
            raise CheckError(f"{path}: [{table}] needs a name for {', '.join(missing)}")


def _check_template_files(dirs: tuple[Path, ...], language: str) -> int:
    """Every required template is there and every template compiles; returns how many."""
    env = drafting.environment(dirs, language)
    home = next(d / language for d in dirs if (d / language).is_dir())
    names = set(env.list_templates(extensions=["j2"]))
    for kind in REQUIRED_TEMPLATES:
        if f"{kind}.txt.j2" not in names:
            raise CheckError(f"{home / f'{kind}.txt.j2'}: missing: every reply language needs "
                             f"{', '.join(k + '.txt.j2' for k in REQUIRED_TEMPLATES)}")
    for name in sorted(names):
        try:
            template = env.get_template(name)
        except TemplateSyntaxError as exc:
            raise CheckError(f"{exc.filename or home / name}:{exc.lineno}: {exc.message}") from None
        stem = name.removesuffix(".txt.j2")
        missing = [b for b in ("subject", "body") if b not in template.blocks]
        if stem in TOP_LEVEL_TEMPLATES and missing:
            raise CheckError(f"{template.filename}: no {{% block {missing[0]} %}}: a mail "
                             "template needs the blocks subject and body")
    return len(names)


def _trial_render(dirs: tuple[Path, ...], language: str, policy: Policy | None) -> None:
    """Render every mail once with sample values: an unknown variable or filter in a template
    is found here, with its template line, instead of when a real request comes in."""
    org = drafting.OrgInfo(id="sample", name="Sample AS", addresses=("post@example.no",),
                           systems=("CRM",), retention_law=("bokføringsloven",))
    day = date(2026, 3, 2)
    trials = (
        lambda: drafting.draft_acknowledgement(org, "DSR-2026-0001", day, language, "123456", True, dirs),
        lambda: drafting.draft_verification(org, "DSR-2026-0001", language, "123456", day, dirs),
        lambda: drafting.draft_extension(org, "DSR-2026-0001", language, day, "sample", dirs),
        lambda: drafting.draft_reply(org, policy, "DSR-2026-0001", list(INTENTS), language, day,
                                     question="hvor lenge lagrer dere opplysninger", templates_dir=dirs),
        lambda: drafting.draft_reply(org, None, "DSR-2026-0001", [], language, day, templates_dir=dirs),
        lambda: drafting.draft_reply(org, policy, "DSR-2026-0001", ["rectification", "objection"],
                                     language, day, corrected=["sample"], templates_dir=dirs),
        lambda: drafting.draft_refusal(org, "DSR-2026-0001", language, "sample", list(INTENTS),
                                       "Sample Name", dirs),
    )
    for trial in trials:
        try:
            trial()
        except (TemplateError, ValueError, KeyError, TypeError, AttributeError) as exc:
            where = _template_frame(exc.__traceback__) or str(dirs[0] / language)
            reason = " ".join(str(exc).split())
            raise CheckError(f"{where}: cannot render: {type(exc).__name__}: {reason}") from None


def _template_frame(tb: TracebackType | None) -> str | None:
    """`path:line` of the innermost template frame. Drafting calls a template's blocks
    directly, so the traceback holds compiled-code lines: the template maps them back."""
    found = None
    for frame_tb in _frames(tb):
        template = frame_tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None and template.filename:
            line = template.get_corresponding_lineno(frame_tb.tb_lineno)
            found = f"{template.filename}:{line}"
    return found


def _frames(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


# --------------------------------------------------------------------------- learned model


def check_model() -> str:
    """The learned model, if any, has the shape its code expects."""
    path = learned.model_path()
    if path is None:
        return "none (the lexicons work alone)"
    model = _load(learned.load_model, path)
    arbiter = ("no arbiter: the model only adds" if model.arbiter is None else "arbiter at " + ", ".join(
        f"{intent} {at:.2f}" for intent, at in model.chosen_at.items()))
    return f"{path} ({len(model.vocabulary)} features x {len(model.intents)} intents, {arbiter})"


# --------------------------------------------------------------------------- helpers


def _load(loader: Any, path: Path) -> Any:
    """Call a loader; its ValueError becomes a CheckError that starts with a path."""
    try:
        return loader(path)
    except (ValueError, KeyError, TypeError) as exc:
        text = " ".join(str(exc).split())
        raise CheckError(text if text.startswith("/") or ":" in text.split(" ")[0]
                         else f"{path}: {text}") from None

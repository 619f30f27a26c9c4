"""Draft the replies staff review before anything is sent.

All wording lives in ``mail_templates/<language>/`` (Jinja2, plain text) and
``mail_templates/<language>/labels.toml`` (month names, names of the rights), so a privacy
officer can change the tone or add a language without touching code. This module only decides
which template to use, which policy sections to quote, and in what order.

A draft never contains personal data about the requester: it explains the right, quotes the
organisation's own policy and says what will happen. Data is handed out only after verification
and staff approval, through another path.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, Template

from assistant import resources
from assistant.understand.policies import Policy, Section, search, sections_for_intent
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

QUOTES_PER_INTENT = 2
QUOTES_PER_QUESTION = 3
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
    return any(folder.is_dir() and any(folder.glob("*.j2")) for folder in folders)


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


def _ordered_intents(intents: list[str]) -> list[str]:
    unknown = [i for i in intents if i not in INTENTS]
    if unknown:
        raise ValueError(f"unknown intent(s) {unknown}; use {', '.join(INTENTS)}")
    return [i for i in RIGHTS_ORDER if i in intents]


def _pick_sections(policy: Policy | None, intent: str, question: str | None) -> list[Section]:
    if policy is None:
        return []
    if intent == "question":
        hits = search(policy, question or "", k=QUOTES_PER_QUESTION)
    else:
        hits = sections_for_intent(policy, intent, k=QUOTES_PER_INTENT)
    hits = [(section, score) for section, score in hits if section.text.strip()]
    if not hits:
        return []
    best = hits[0][1]
    # A much weaker runner-up adds length, not help: quote it only if it is close to the best.
    return [section for section, score in hits if score >= best * QUOTE_RELATIVE_CUT]


def _items(policy: Policy | None, intents: list[str], question: str | None,
           labels: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """One block per intent; a section quoted once is referred to, not quoted again."""
    quoted: list[str] = []
    items = []
    for intent in intents:
        chosen = _pick_sections(policy, intent, question)
        fresh = [s for s in chosen if s.id not in quoted]
        again = [s for s in chosen if s.id in quoted]
        quoted.extend(s.id for s in fresh)
        items.append({
            "intent": intent,
            "template": f"{intent}.txt.j2",
            "label": labels["intents"][intent],
            "heading": labels["headings"][intent],
            "sections": fresh,
            "quoted_before": again,
            "described": bool(chosen),
        })
    return items, tuple(quoted)


def draft_reply(
    org: OrgInfo, policy: Policy | None, ref: str, intents: list[str], language: str, due: date,
    question: str | None = None, extended_due: date | None = None,
    extension_reason: str | None = None, templates_dir: TemplateDirs = None,
    verified: bool = False,
) -> Draft:
    """The answer to a request: one mail covering every intent, quoting the organisation's own
    policy where it speaks to that right and stating the right in plain words where it does not.
    No intents means we did not understand the request: ask, and list the rights.
    `verified` says the requester's identity is already confirmed, so the reply does not
    promise to act only once it is."""
    templates_dir = template_dirs(templates_dir)
    lang = reply_language(language, templates_dir)
    ordered = _ordered_intents(list(intents))
    labels = _labels(templates_dir, lang)
    shown_due = extended_due or due
    context = _base_context(org, ref, lang, templates_dir) | {
        "due": format_date(shown_due, lang, templates_dir),
        "extended_due": format_date(extended_due, lang, templates_dir) if extended_due else "",
        "extension_reason": (extension_reason or "").strip(),
        "policy_known": policy is not None,
        "verified": verified,
    }
    if not ordered:
        subject, body = _render(templates_dir, lang, "unclear.txt.j2", context)
        return Draft("unclear", lang, subject, body, ())
    items, quoted = _items(policy, ordered, question, labels)
    context |= {"items": items, "intents": ordered,
                "only_question": ordered == ["question"]}
    subject, body = _render(templates_dir, lang, "reply.txt.j2", context)
    return Draft("+".join(ordered), lang, subject, body, quoted)

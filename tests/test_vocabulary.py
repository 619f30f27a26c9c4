"""Everything that names an intent, state, channel, event kind or verification method names one
that assistant/vocabulary.py defines, and every intent has what it needs everywhere.

Each guard reads the data or the source directly (files, the click tree, the README, the AST of
the package), so a new lexicon section, policy tag, template, CLI choice, state in the README's
diagram or event kind in cases.py fails here before it drifts from the vocabulary.
"""

from __future__ import annotations

import ast
import email
import email.policy
import re
import tomllib
import typing
from email.message import EmailMessage
from pathlib import Path

import click
import pytest

from assistant import cases, vocabulary
from assistant.cli import cli
from assistant.config import CaseSettings
from assistant.drafting import RIGHTS_ORDER
from assistant.mail import parse
from assistant.understand import intents, learned, policies
from assistant.understand.intents import SPECIAL_SECTIONS
from assistant.vocabulary import (
    INTENTS,
    STAFF_VERIFICATION_METHODS,
    STATES,
    CaseState,
    Channel,
    ClockMode,
    EventKind,
    Intent,
    VerificationMethod,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "assistant"


def values(enum: type) -> set[str]:
    return {member.value for member in enum}


# -- the vocabulary itself -------------------------------------------------------------------------


def test_vocabulary_imports_nothing_else_of_the_package():
    tree = ast.parse((PACKAGE / "vocabulary.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not node.level and not (node.module or "").startswith("assistant"), node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("assistant") for a in node.names)


def test_values_are_plain_strings_and_orders_are_complete():
    assert INTENTS == tuple(intent.value for intent in Intent)
    assert all(type(i) is str for i in INTENTS + STATES + RIGHTS_ORDER)
    assert sorted(RIGHTS_ORDER) == sorted(INTENTS)
    assert STATES == tuple(state.value for state in CaseState)
    assert set(STAFF_VERIFICATION_METHODS) == values(VerificationMethod) - {"not_required"}
    assert vocabulary.STAFF_CHANNELS and set(vocabulary.STAFF_CHANNELS) <= values(Channel)


def test_old_names_are_the_vocabulary():
    assert intents.INTENTS is INTENTS and learned.INTENTS is INTENTS
    assert policies.INTENTS is INTENTS
    assert cases.STATES is STATES and cases.VERIFICATION_METHODS is STAFF_VERIFICATION_METHODS
    assert RIGHTS_ORDER is vocabulary.RIGHTS_ORDER


def test_the_learned_model_knows_the_same_intents():
    model = learned.load_model()
    assert model is not None and model.intents == INTENTS


def test_the_case_engine_uses_only_known_states_and_intents():
    assert set(cases.TRANSITIONS) == set(STATES)
    for targets in cases.TRANSITIONS.values():
        assert targets <= set(STATES)
    assert cases.FINISHED_STATES <= set(STATES)
    assert cases.NO_DISCLOSURE_INTENTS <= set(INTENTS)


def test_the_clock_setting_offers_exactly_the_clock_modes():
    annotation = typing.get_type_hints(CaseSettings)["verification_clock"]
    assert set(typing.get_args(annotation)) == values(ClockMode)


# -- lexicons --------------------------------------------------------------------------------------


def lexicon_sections(directory: Path = ROOT / "intents") -> list[tuple[str, str]]:
    """(file, section) for every section that names an intent: [erasure], [action.erasure]."""
    found: list[tuple[str, str]] = []
    for path in sorted(directory.glob("*.toml")):
        if path.name == "languages.toml":
            continue
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for section, entries in data.items():
            if not isinstance(entries, dict):
                continue
            if section in intents.COMPOSED_SECTIONS:
                found += [(path.name, f"{section}.{sub}") for sub in entries]
            else:
                found.append((path.name, section))
    return found


def unknown_lexicon_sections(directory: Path = ROOT / "intents") -> list[str]:
    bad = []
    for file, section in lexicon_sections(directory):
        head, _, sub = section.partition(".")
        if sub:
            allowed = set(INTENTS) | ({"any"} if head == "object" else set())
            ok = sub in allowed
        else:
            ok = section in INTENTS or section in SPECIAL_SECTIONS
        if not ok:
            bad.append(f"{file}: [{section}]")
    return bad


def test_every_lexicon_section_names_a_known_intent():
    assert unknown_lexicon_sections() == []


def test_every_intent_has_lexicon_cues():
    named = {section for _, section in lexicon_sections()}
    assert set(INTENTS) <= named


def test_the_lexicon_guard_catches_an_unknown_intent(tmp_path):
    (tmp_path / "xx.toml").write_text('[complaint]\n"klage" = 1.0\n[action.complain]\n"x" = 1\n',
                                      encoding="utf-8")
    assert sorted(unknown_lexicon_sections(tmp_path)) == [
        "xx.toml: [action.complain]", "xx.toml: [complaint]"]


# -- policies --------------------------------------------------------------------------------------

INTENT_TAG = re.compile(r"<!--\s*intents\s*:\s*([^;>]*?)\s*(?:;|-->)", re.IGNORECASE)


def policy_intent_tags(text: str) -> list[str]:
    tags: list[str] = []
    for found in INTENT_TAG.finditer(text):
        tags += [t.strip().lower() for t in found.group(1).split(",") if t.strip()]
    return [t for t in tags if t != "none"]


def test_every_policy_intent_tag_is_a_known_intent():
    for path in sorted((ROOT / "policies").glob("*.md")):
        tags = policy_intent_tags(path.read_text(encoding="utf-8"))
        assert set(tags) <= set(INTENTS), (path.name, set(tags) - set(INTENTS))
        if path.name != "README.md":
            assert tags, f"{path.name} tags no section with an intent"


def test_the_policy_guard_catches_an_unknown_tag():
    assert policy_intent_tags("## X\n<!-- intents: access, complaint; topics: y -->") == [
        "access", "complaint"]


# -- reply templates -------------------------------------------------------------------------------

# Templates that are not the answer to one intent.
OTHER_TEMPLATES = {"_macros", "acknowledgement", "extension", "refusal", "reply", "unclear",
                   "escalation", "digest",  # to staff and managers (scheduler)
                   "verification"}


def template_languages() -> list[Path]:
    return sorted(p for p in (ROOT / "mail_templates").iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", template_languages(), ids=lambda p: p.name)
def test_every_intent_has_its_template_and_labels(folder: Path):
    names = {p.name.removesuffix(".txt.j2") for p in folder.glob("*.txt.j2")}
    assert names - OTHER_TEMPLATES == set(INTENTS), folder.name
    labels = tomllib.loads((folder / "labels.toml").read_text(encoding="utf-8"))
    for table in ("intents", "headings"):
        assert set(labels[table]) == set(INTENTS), (folder.name, table)


# -- the command line ------------------------------------------------------------------------------

CHOICE_VOCABULARY = {"intents": values(Intent), "intent": values(Intent),
                     "channel": values(Channel), "state": values(CaseState),
                     "method": values(VerificationMethod)}


def choice_options(command: click.Command, path: str = "dsr") -> list[tuple[str, str, tuple]]:
    """(command path, option name, choices) for every click.Choice in the command tree."""
    found = [(path, p.name, tuple(p.type.choices)) for p in command.params
             if isinstance(p.type, click.Choice)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += choice_options(sub, f"{path} {name}")
    return found


def test_every_cli_choice_is_in_the_vocabulary():
    options = choice_options(cli)
    checked = {name for _, name, _ in options if name in CHOICE_VOCABULARY}
    assert checked == {"intents", "channel", "state", "method"}  # the walk reaches them all
    for path, name, choices in options:
        if name in CHOICE_VOCABULARY:
            assert set(choices) <= CHOICE_VOCABULARY[name], (path, name)
            assert all(type(c) is str for c in choices), (path, name)


def test_the_cli_offers_every_intent_and_state():
    by_name = {name: set(choices) for _, name, choices in choice_options(cli)}
    assert by_name["intents"] == set(INTENTS)
    assert by_name["state"] == set(STATES)
    assert by_name["method"] == set(STAFF_VERIFICATION_METHODS)


# -- the README ------------------------------------------------------------------------------------

# Words of the state diagram that are actions, not states.
DIAGRAM_ACTIONS = {"reopen"}


def readme_diagram_states(readme: str) -> set[str]:
    """The states named in the ``` block under "Cases and their states" (the parenthesised
    "(any open state)" is a note, not a state)."""
    section = readme.split("Cases and their states", 1)[1]
    block = re.search(r"```[^\n]*\n(.*?)```", section, re.DOTALL)
    assert block, "no diagram under 'Cases and their states'"
    text = re.sub(r"\([^)]*\)", " ", block.group(1))
    return set(re.findall(r"[a-z_]+", text)) - DIAGRAM_ACTIONS


def test_the_readme_state_diagram_names_exactly_the_states():
    assert readme_diagram_states((ROOT / "README.md").read_text(encoding="utf-8")) == set(STATES)


def test_the_diagram_guard_catches_an_unknown_state():
    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace(
        "answered -> closed", "answered -> escalated -> closed", 1)
    assert readme_diagram_states(readme) - set(STATES) == {"escalated"}


def test_the_readme_lists_the_verification_methods():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if "--method M" in line)
    named = re.findall(r"`([a-z_]+)`", row.split("`M` is", 1)[1])
    assert set(named) == set(STAFF_VERIFICATION_METHODS)
    for method in re.findall(r'verification_method = "([a-z_]+)"', readme):
        assert method in values(VerificationMethod)


# -- event kinds in the code -----------------------------------------------------------------------

# (function, index of the kind among the positional arguments, index of the target state)
EVENT_CALLS = {"record_event": (3, None), "_move": (4, 2)}


def _argument(call: ast.Call, index: int | None, keyword: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if index is not None and len(call.args) > index:
        return call.args[index]
    return None


def _names(node: ast.expr, enum: type) -> list[str] | None:
    """The values an argument can take; None when the code does not say them plainly."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == enum.__name__:
        return [enum[node.attr].value if node.attr in enum.__members__ else f"{enum.__name__}.{node.attr}"]
    if isinstance(node, ast.IfExp):
        body, orelse = _names(node.body, enum), _names(node.orelse, enum)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.JoinedStr):
        # f"notice_{outcome}": every value the pattern could take must be a kind, so at least
        # one must match; record_event checks the actual value at run time (EventKind(kind)).
        pattern = "".join(re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z_]+"
                          for v in node.values)
        matching = [v for v in values(enum) if re.fullmatch(pattern, v)]
        return matching or [pattern]
    return None


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, ast.FunctionDef]:
    """The innermost function each node stands in (ast.walk visits outer functions first, so
    an inner function overwrites its outer one for its own body)."""
    owner: dict[ast.AST, ast.FunctionDef] = {}
    for function in [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]:
        for node in ast.walk(function):
            if node is not function:
                owner[node] = function
    return owner


def _resolve(arg: ast.expr, function: ast.FunctionDef | None, enum: type) -> list[str] | None:
    """Values of an argument; a local name is followed to what it was assigned in the function
    ("target = 'verified' if … else 'awaiting_verification'")."""
    if isinstance(arg, ast.Name) and function is not None:
        assigned = [n.value for n in ast.walk(function) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == arg.id for t in n.targets)]
        if assigned:
            found: list[str] = []
            for value in assigned:
                names = _names(value, enum)
                if names is None:
                    return None
                found += names
            return found
    return _names(arg, enum)


def event_names(source: str, filename: str) -> list[tuple[str, int, str | None, str]]:
    """(what, line, value, source text) for every kind and target state passed to
    record_event/_move. record_event called by _move with _move's own `kind` is skipped: the
    callers of _move are checked instead."""
    found = []
    tree = ast.parse(source, filename=filename)
    owner = _enclosing_functions(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if func not in EVENT_CALLS:
            continue
        kind_at, state_at = EVENT_CALLS[func]
        for what, index, keyword, enum in (("kind", kind_at, "kind", EventKind),
                                           ("state", state_at, "to_state", CaseState)):
            if index is None:
                continue
            arg = _argument(node, index, keyword)
            if arg is None:  # the definition's own parameters, or a call by **kwargs
                continue
            function = owner.get(node)
            if (isinstance(arg, ast.Name) and function is not None and function.name in EVENT_CALLS
                    and arg.id in {a.arg for a in function.args.args}):
                continue  # forwarding its own parameter
            names = _resolve(arg, function, enum)
            for name in names or [None]:
                found.append((what, node.lineno, name, ast.unparse(arg)))
    return found


def unknown_event_names(source: str, filename: str = "cases.py") -> list[str]:
    allowed = {"kind": values(EventKind), "state": values(CaseState)}
    return [f"{filename}:{line}: {what} {text}" for what, line, name, text
            in event_names(source, filename) if name not in allowed[what]]


def test_every_event_kind_and_target_state_in_the_code_is_in_the_vocabulary():
    kinds: set[str | None] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert unknown_event_names(source, str(path.relative_to(ROOT))) == []
        kinds |= {name for what, _, name, _ in event_names(source, path.name) if what == "kind"}
    assert kinds == values(EventKind)  # the scan reaches every call, and no kind is dead


def test_the_event_guard_catches_a_new_kind():
    source = (PACKAGE / "cases.py").read_text(encoding="utf-8").replace(
        'record_event(session, case, by, "extended"', 'record_event(session, case, by, "prolonged"', 1)
    assert len(unknown_event_names(source)) == 1
    assert unknown_event_names("_move(s, c, 'escalated', a, 'opened')") == [
        "cases.py:1: state 'escalated'"]
    assert unknown_event_names("record_event(s, c, a, kind)") == ["cases.py:1: kind kind"]


def test_record_event_refuses_an_unknown_kind():
    with pytest.raises(ValueError):
        cases.record_event(None, None, "test", "prolonged")  # type: ignore[arg-type]


# -- reply prefixes --------------------------------------------------------------------------------

REPLIES = ["VB: Innsyn", "SV: SV: Re: innsyn", "Fwd: Sletting av data", "AW: Auskunft",
           "Re[2]: innsyn", "RE:innsyn", "Videresend: Slett meg", "TR: accès", "Antw: inzage",
           "VS: Reservasjon", "fw: x", "  Sv : Re: x"]
NEW_SUBJECTS = ["Innsyn", "Reservasjon mot markedsføring", "Svar på spørsmål", "Re innsyn",
                "Tre spørsmål", "Vs. forrige henvendelse", "Fwd"]


def test_one_reply_prefix_regex_serves_every_reader():
    for module in (intents, learned):
        assert module.is_reply_subject is vocabulary.is_reply_subject, module.__name__
    assert parse.strip_reply_prefixes is vocabulary.strip_reply_prefixes
    # No other module keeps its own list of prefixes.
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "vocabulary.py":
            assert not re.search(r"\bantw\b|\bvb\b|\|fwd\b", path.read_text(encoding="utf-8"),
                                 re.IGNORECASE), path


@pytest.mark.parametrize("subject", REPLIES)
def test_every_reader_strips_a_reply_subject_alike(subject: str):
    assert intents._new_subject(subject) == ""
    assert learned._subject_words(subject) == []
    stripped = vocabulary.strip_reply_prefixes(subject)
    assert not vocabulary.is_reply_subject(stripped) and stripped == stripped.lstrip()
    # The mail parser reads the same prefixes in front of an out-of-office subject.
    prefix = vocabulary.REPLY_PREFIX_RE.match(subject).group(0)
    assert parse.auto_reason(_email(), "a@b.no", prefix + "Autosvar: ferie") == "auto-reply-subject"


@pytest.mark.parametrize("subject", NEW_SUBJECTS)
def test_a_new_subject_is_read_by_every_reader(subject: str):
    assert intents._new_subject(subject) == subject
    assert learned._subject_words(subject) != []
    assert vocabulary.strip_reply_prefixes(subject) == subject


def _email() -> EmailMessage:
    return email.message_from_bytes(b"From: a@b.no\nSubject: x\n\nhei\n",
                                    policy=email.policy.default)  # type: ignore[return-value]

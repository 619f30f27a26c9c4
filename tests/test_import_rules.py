"""The stage layout of DESIGN.md, enforced: one direction of flow.

Channels convert and store; the core decides; reviewers and senders act. The rules are read off
the source with `ast` (no module is imported), so a stage that breaks them fails here before it
ships. The checker itself is tried on made-up graphs, so a rule that stops catching breaks too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "assistant"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Libraries that talk to the outside world: the core must reach them only through channels and
# senders, never directly (DESIGN: "the core never imports Slack or IMAP code").
NETWORK_LIBRARIES = ("slack_bolt", "slack_sdk", "imapclient", "aiosmtpd", "smtplib", "imaplib")
CORE = ("assistant.cases", "assistant.workflow", "assistant.drafting", "assistant.deadlines",
        "assistant.understand", "assistant.store", "assistant.vocabulary", "assistant.mail")
WORKERS = ("assistant.intake", "assistant.outbox", "assistant.scheduler")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names a module imports, relative imports resolved; `from x import y` counts as
    both x and x.y, since y may be a submodule."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks a rule of DESIGN.md, as 'module -> import: rule'."""
    found: list[str] = []

    def bad(module: str, target: str, rule: str) -> None:
        found.append(f"{module} -> {target}: {rule}")

    for module, targets in graph.items():
        for target in sorted(targets):
            if within(module, "assistant.channels") and within(
                    target, ("assistant.understand", "assistant.cases", "assistant.drafting")):
                bad(module, target, "channels only store what arrived")
            for worker in WORKERS:
                if within(module, worker) and within(target, WORKERS) and not within(target, worker):
                    bad(module, target, "intake, outbox and scheduler meet only in tables")
            # `dsr demo` is the CLI's: it starts the service on a temporary database.
            if within(target, ("assistant.cli", "assistant.service", "assistant.__main__")) and not (
                    within(module, ("assistant.cli", "assistant.__main__", "assistant.demo"))):
                bad(module, target, "nothing imports the CLI or the service")
            if within(module, "assistant.workflow") and within(
                    target, ("assistant.outbox", "assistant.channels") + NETWORK_LIBRARIES):
                bad(module, target, "workflow never sends")
            if within(module, CORE) and within(target, NETWORK_LIBRARIES + ("assistant.channels",)):
                bad(module, target, "the core never imports network or channel code")
            if within(module, "assistant.store") and within(target, PACKAGE) and not within(
                    target, "assistant.store"):
                bad(module, target, "store imports nothing else of the package")
            if within(module, "assistant.understand") and within(target, (
                    "assistant.mail", "assistant.store", "assistant.cases", "assistant.workflow",
                    "assistant.drafting")):
                bad(module, target, "understand/ only turns text into facts")
    return found


def test_the_package_keeps_the_import_rules():
    graph = package_graph()
    assert "assistant.cases" in graph and "assistant.mail.parse" in graph
    assert violations(graph) == []


def test_raw_mail_parsing_lives_on_the_intake_side():
    assert not (ROOT / "understand" / "mailtext.py").exists()
    assert (ROOT / "mail" / "parse.py").exists()


def test_relative_imports_are_resolved():
    graph = package_graph()
    assert "assistant.cases" in graph["assistant.workflow"]
    assert "assistant.understand.intents" in graph["assistant.understand.pipeline"]


def test_each_rule_catches_its_breakage():
    broken = {
        "assistant.channels.smtp": {"assistant.understand.intents"},
        "assistant.channels.slack.desk": {"assistant.workflow", "assistant.cases"},
        "assistant.intake": {"assistant.outbox"},
        "assistant.scheduler": {"assistant.intake"},
        "assistant.outbox": {"assistant.scheduler.digest"},
        "assistant.workflow": {"assistant.outbox", "smtplib"},
        "assistant.cases": {"slack_sdk.web"},
        "assistant.store.models": {"assistant.config"},
        "assistant.understand.intents": {"assistant.store.models"},
        "assistant.drafting": {"assistant.cli"},
        "assistant.intake.worker": {"assistant.service"},
    }
    found = violations(broken)
    for module in broken:
        assert any(line.startswith(module + " ->") for line in found), module
    # What the rules allow: the Slack desk acts through workflow; the CLI may import anything.
    allowed = {"assistant.channels.slack.desk": {"assistant.workflow"},
               "assistant.cli": {"assistant.service", "assistant.intake"},
               "assistant.intake": {"assistant.workflow", "assistant.mail.parse"}}
    assert violations(allowed) == []

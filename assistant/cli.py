"""The `dsr` command line: the operator's and the review desk's interface (DESIGN.md contract).

Exit codes: 0 done, 1 the action was refused (the reason on stderr), 2 bad usage or config.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from . import cases as case_engine
from . import resources, workflow
from .config import ConfigError, Settings, load_settings
from .deadlines import OSLO, compute_deadlines, parse_received
from .logs import get_logger, setup_logging
from .store.audit import verify_trail
from .store.db import StoreBusy, StoreError, classify_failure, open_store, session_scope
from .vocabulary import INTENTS, STAFF_CHANNELS

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1
EXIT_USAGE = 2

# Never log argv: it holds requester addresses, names and what they said.
log = get_logger("cli")


class Refused(click.ClickException):
    """An action the engine refused: exit 1 with the reason."""

    exit_code = EXIT_REFUSED

    def show(self, file: Any = None) -> None:
        log.info("command refused: %s", self.format_message())
        click.echo(f"dsr: refused: {self.format_message()}", err=True)


class UsageProblem(click.ClickException):
    """Bad input or configuration: exit 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        log.info("command failed: %s", self.format_message())
        click.echo(f"dsr: error: {self.format_message()}", err=True)


class DataProblem(UsageProblem):
    """A data file (policy, lexicon, template, model) that `dsr check` rejects: exit 2 with the
    bare `path:line: what is wrong`, the form editors jump to."""

    def show(self, file: Any = None) -> None:
        click.echo(" ".join(self.format_message().splitlines()), err=True)


# -- shared plumbing ----------------------------------------------------------------------------


def config_option(func: F) -> F:
    """Every command takes --config, so it can stand after the subcommand as DESIGN.md shows."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="TOML config file (default: $DSR_CONFIG, else the embedded defaults).",
    )
    @wraps(func)
    def wrapper(*args: Any, config_path: Path | None = None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if config_path is not None:
            ctx.meta["dsr.config"] = config_path
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    ctx = click.get_current_context()
    cached = ctx.meta.get("dsr.settings")
    if cached is None:
        try:
            cached = load_settings(ctx.meta.get("dsr.config"))
        except ConfigError as exc:
            raise UsageProblem(str(exc)) from None
        resources.configure(cached)  # the operator's [data] folders, for every loader's default
        ctx.meta["dsr.settings"] = cached
        setup_logging(cached)
        log.debug("command started", extra={"command": ctx.command_path})
    return cached


def checked_settings() -> Settings:
    """The settings, after `dsr check` passed on them (once per process): every command that
    classifies or drafts calls this first, so a broken data file stops it with one line."""
    from . import checks

    conf = settings()
    try:
        checks.check_once(conf)
    except checks.CheckError as exc:
        raise DataProblem(str(exc)) from None
    return conf


class Busy(click.ClickException):
    """The database stayed locked past the busy timeout: exit 1, since trying again may work."""

    exit_code = EXIT_REFUSED

    def show(self, file: Any = None) -> None:
        click.echo(f"dsr: error: {self.format_message()}", err=True)


@contextmanager
def store_session(*, write: bool = True) -> Iterator[tuple[Settings, Session]]:
    """The configured store in one transaction; `write=False` for commands that only read.
    A busy database is exit 1 ("try again"), one that cannot be written or opened exit 2."""
    conf = settings()
    try:
        engine = open_store(conf.database.url)
        try:
            with session_scope(engine, write=write) as session:
                yield conf, session
        except DBAPIError as exc:
            failure = classify_failure(exc, engine)
            if failure is None:
                raise
            raise failure from None
    except StoreBusy as exc:
        raise Busy(str(exc)) from None
    except StoreError as exc:
        raise UsageProblem(str(exc)) from None
    except case_engine.CaseError as exc:
        raise Refused(str(exc)) from None
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None
    except DBAPIError as exc:
        # The database's own first line only: the statement and its parameters (addresses,
        # names) never reach the terminal.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise UsageProblem(f"the database refused the change: {reason}") from None


def store_engine() -> tuple[Settings, Any]:
    """The configuration and its store, for commands that run their own transactions."""
    conf = settings()
    try:
        return conf, open_store(conf.database.url)
    except StoreError as exc:
        raise UsageProblem(str(exc)) from None


def parse_moment(value: str | None, option: str) -> datetime | None:
    """An ISO time from the command line; a bare date means midday in Oslo that day."""
    if value is None:
        return None
    try:
        parsed = parse_received(value)
    except ValueError as exc:
        raise UsageProblem(f"{option}: {exc}") from None
    if isinstance(parsed, datetime):
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=OSLO)
    return datetime(parsed.year, parsed.month, parsed.day, 12, tzinfo=OSLO)


# An edited reply is a letter, not a log: anything larger is the wrong file (or /dev/zero).
MAX_TEXT_FILE_BYTES = 1_048_576


def read_text_file(path: Path, option: str) -> str:
    """A UTF-8 text file from the command line, refused in one line if it is anything else."""
    try:
        if not path.is_file():
            raise UsageProblem(f"{option}: {path} is not a regular file")
        with path.open("rb") as fh:
            data = fh.read(MAX_TEXT_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageProblem(f"{option}: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise UsageProblem(f"{option}: {path} is larger than {MAX_TEXT_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageProblem(f"{option}: {path} is not UTF-8 text") from None


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned table: readable in any terminal, and in a pipe."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def not_built(what: str, issue: str) -> None:
    raise UsageProblem(f"{what} is not built yet (planned: {issue}); nothing was done")


# -- the group ----------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML config file (default: $DSR_CONFIG, else the embedded defaults).",
)
@click.version_option(package_name="dsr", prog_name="dsr")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """dsr: answers GDPR data-subject requests for small Norwegian companies.

    It reads the privacy inbox, works out what each person asks for (access, erasure,
    portability, opt-out and more), opens a tracked case with a legal deadline, drafts the
    reply from the company's own privacy policy and lets staff approve it.

    Configuration: --config FILE or $DSR_CONFIG (TOML); any key also as DSR_SECTION__KEY,
    e.g. DSR_DATABASE__URL. With neither, the embedded defaults serve the five seed companies.
    """
    if config_path is not None:
        ctx.meta["dsr.config"] = config_path


@cli.command()
@config_option
def serve() -> None:
    """Run every configured channel, the worker and the outbox sender until stopped.

    The SMTP listener on smtp.listen (and the IMAP listener when [imap] is configured) store
    each mail before they acknowledge it; the intake worker opens or links cases and queues the
    acknowledgement; the sender delivers approved replies through [outbound] (or to the
    outbound.maildir folder when no host is set). SIGTERM/SIGINT: stop accepting, finish the
    message in hand, exit 0. Logs at INFO unless log.level is set.
    """
    from . import service

    checked_settings()
    with store_session() as (conf, _session):
        orgs = ", ".join(o.id for o in conf.organizations)
        click.echo(f"dsr: configuration valid; database ready; organisations: {orgs}", err=True)
    try:
        code = service.serve(conf)
    except OSError as exc:
        raise UsageProblem(f"smtp.listen {conf.smtp.listen}: cannot listen ({exc.strerror or exc})") from None
    sys.exit(code)


@cli.command()
@config_option
def demo() -> None:
    """Send sample inquiries through the whole pipeline on a temporary database.

    Five realistic inquiries (one per seed organisation) go in through the SMTP listener on a
    free port; you see the acknowledgement with its one-time code, the requester's code reply,
    staff settling the checklist and approving, and the threaded reply, each as it happens.
    Nothing leaves 127.0.0.1 and nothing is kept afterwards."""
    from .demo import Demo

    conf = checked_settings()
    try:
        code = Demo(conf, click.echo).run()
    except (TimeoutError, RuntimeError) as exc:
        raise Refused(f"demo stopped: {exc}") from None
    sys.exit(code)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--store-only", is_flag=True,
              help="Only store the messages; the worker of a running `dsr serve` decides later.")
@config_option
def import_(paths: tuple[Path, ...], store_only: bool) -> None:
    """Backfill mbox files, Maildirs, .eml files or folders of them through the normal intake.

    Each message is stored once (a message seen before, by any channel, is skipped), with its
    receipt time from the topmost Received header, else its Date; then the intake worker opens
    or links a case for each, as for mail that arrives by SMTP or IMAP. A request still within
    its deadline is acknowledged as usual (the sender of `dsr serve` delivers the receipt); one
    whose due date has passed opens its case overdue without a receipt (an
    `acknowledgement_skipped` event), and the escalation ladder takes it to the managers."""
    from .channels.files import import_paths

    conf = checked_settings()
    with store_session() as (_conf, _session):
        pass  # the schema is at head and the database writable before anything is read
    engine = open_store(conf.database.url)
    with _progress("storing") as advance:
        report = import_paths(engine, [str(p) for p in paths],
                              progress=lambda r: advance(r.processed, r.total))
    click.echo(f"stored {report.stored}, seen before {report.seen_before}, "
               f"unreadable {report.unreadable}, not mail {report.ignored}")
    for where, reason in report.problems[:20]:
        click.echo(f"  unreadable: {where}: {reason}", err=True)
    if store_only:
        return
    outcomes = _drain_with_progress(engine, conf)
    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(outcomes.items())) or "nothing"
    click.echo(f"processed: {summary}")


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar on stderr when it is a terminal; silence in a pipe or a test."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _done, _total: None
        return
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _drain_with_progress(engine: Any, conf: Settings) -> dict[str, int]:
    """Run the intake worker until no stored message is left; outcomes counted by status."""
    from . import intake

    outcomes: dict[str, int] = {}
    with _progress("processing") as advance:
        while True:
            outcome = intake.process_one(engine, conf)
            if outcome is None:
                break
            outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
            advance(sum(outcomes.values()), None)
    return outcomes


@cli.command()
@click.option("--now", "now_text", metavar="ISO", help="Act as if it were this moment.")
@config_option
def sweep(now_text: str | None) -> None:
    """Run the escalation sweep once, as if it were --now; print what it escalated."""
    moment = parse_moment(now_text, "--now")
    from . import scheduler

    conf, engine = store_engine()
    done = scheduler.sweep(engine, conf, moment)
    for item in done:
        click.echo(item.line())
    click.echo(f"{len(done)} escalation{'s' if len(done) != 1 else ''}", err=True)


@cli.command()
@click.option("--now", "now_text", metavar="ISO", help="Build the digest as if it were this moment.")
@click.option("--print", "to_stdout", is_flag=True, help="Write the digest to stdout instead of sending it.")
@config_option
def digest(now_text: str | None, to_stdout: bool) -> None:
    """Build the managers' digest of what is due."""
    moment = parse_moment(now_text, "--now")
    from . import scheduler

    if to_stdout:
        with store_session(write=False) as (conf, session):
            built = scheduler.build_digest(session, conf, moment)
        language = conf.organizations[0].language if conf.organizations else "en"
        _subject, body, _html = scheduler.render_digest(built, language)
        click.echo(body, nl=False)
        return
    conf, engine = store_engine()
    sent = scheduler.send_digest(engine, conf, moment)
    if sent is None:
        click.echo("the digest for this period was already sent", err=True)
        return
    click.echo(f"digest {sent['period']} queued for: {', '.join(sent['to']) or 'nobody'}")


@cli.command()
@config_option
def check() -> None:
    """Validate the configuration and every data file it uses.

    Policies (front matter, sections, intent tags; a configured policy that does not exist),
    lexicons and language profiles (TOML, sections, phrases), mail templates (syntax, every
    reply kind in every reply language, a trial render) and the learned model's shape. A
    problem is one line on stderr, path:line: what is wrong, and exit code 2; all well prints a
    summary. Commands that classify or draft run the same check first.
    """
    from . import checks

    conf = settings()
    try:
        report = checks.run_checks(conf)
    except checks.CheckError as exc:
        raise DataProblem(str(exc)) from None
    click.echo(report.summary())
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


# -- policies -----------------------------------------------------------------------------------


@cli.group()
def policies() -> None:
    """The organisations' privacy policies and records of processing."""


@policies.command("check")
@click.argument("org_id", required=False, metavar="[ORG]")
@config_option
def policies_check(org_id: str | None) -> None:
    """Flag what a reply must not repeat from a policy: repealed or invalid law (Privacy
    Shield, the 2000 personopplysningsloven, ekomloven § 2-7b, a law named as a retention duty
    that is none), dead links, and retention periods that contradict the record of processing.

    One line per finding, file:line: what is wrong (why / what is current). The rules are data:
    policies/stale_law.toml. A report: exit 0 whatever it finds; 2 for an unknown ORG.
    """
    from . import checks

    conf = settings()
    if org_id is not None:
        try:
            orgs = [conf.organization(org_id)]
        except ConfigError as exc:
            raise UsageProblem(str(exc)) from None
    else:
        orgs = list(conf.organizations)
    try:
        found = checks.policy_findings(conf, orgs)
    except checks.CheckError as exc:
        raise DataProblem(str(exc)) from None
    total = 0
    for _org, findings in found:
        for finding in findings:
            click.echo(str(finding))
        total += len(findings)
    checked = [org for org, _ in found]
    click.echo(f"dsr policies check: {total} finding(s) in {len(checked)} "
               f"polic{'y' if len(checked) == 1 else 'ies'} ({', '.join(checked) or 'none'})",
               err=True)


# -- deadline -----------------------------------------------------------------------------------


@cli.command()
@click.option("--received", "received_text", required=True, metavar="ISO",
              help="When the request reached us: 2026-02-01, 2026-02-01T10:00 (Oslo) or with Z/offset.")
@click.option("--org", "org_id", default=None, help="Organisation id: uses its promise_days and calendar.")
@click.option("--json", "as_json", is_flag=True, help="Print the six dates as JSON.")
@config_option
def deadline(received_text: str, org_id: str | None, as_json: bool) -> None:
    """The legal and promised due dates for a request received at --received.

    legal_due is one calendar month later (GDPR Art. 12(3)), promised_due is the
    organisation's promise (30 days by default); both move past weekends and Norwegian
    public holidays. due is the earlier; extended_due is three months after receipt.
    """
    try:
        received = parse_received(received_text)
    except ValueError as exc:
        raise UsageProblem(f"--received: {exc}") from None
    conf = settings()
    promise = 30
    if org_id is not None:
        try:
            promise = conf.organization(org_id).promise_days
        except ConfigError as exc:
            raise UsageProblem(str(exc)) from None
    c = conf.cases
    from .deadlines import Calendar

    result = compute_deadlines(received, promise, Calendar(c.holiday_country, c.holiday_subdiv,
                                                            c.extra_closed_dates))
    data = result.as_dict()
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key:<20} {value}")


# -- classify -----------------------------------------------------------------------------------


def _classify_one(conf: Settings, body: str, subject: str, to: str | None) -> Any:
    from .understand.pipeline import understand_text

    org = conf.organization_for_address(to) if to else None
    return understand_text(body, subject=subject, default_language=org.language if org else "nb")


@cli.command()
@click.argument("text", required=False)
@click.option("--subject", default="", help="Subject line to classify with TEXT.")
@click.option("--to", "to", default=None, help="Address the message was sent to (picks the default language).")
@click.option("--jsonl", is_flag=True,
              help='Read {"id","subject","body","to"} lines on stdin; write {"id","intents","language",'
                   '"possible_request"} lines.')
@click.option("--eml", "eml", metavar="FILE|-", default=None,
              help="Classify a raw message (.eml; '-' reads stdin) as the intake worker reads it.")
@click.option("--explain", is_flag=True, help="Show the evidence and confidence behind the answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result for TEXT as JSON.")
@config_option
def classify(text: str | None, subject: str, to: str | None, jsonl: bool, eml: str | None,
             explain: bool, as_json: bool) -> None:
    """Work out what a message asks for: its intents and its language.

    TEXT is the message body (or '-' / nothing to read it from stdin). Quoted earlier mail and
    signatures are ignored, as in the inbox. With --eml, a whole raw message is parsed first
    (headers, MIME, HTML, quotes) and its subject and new text are classified; the language
    defaults to that of the organisation it was addressed to.
    """
    conf = checked_settings()
    if eml is not None:
        if text is not None or jsonl or subject or to:
            raise UsageProblem("--eml takes the subject, body and recipients from the message; "
                               "give no TEXT, --jsonl, --subject or --to with it")
        _classify_eml(conf, eml, explain, as_json)
        return
    if jsonl:
        if text is not None:
            raise UsageProblem("give either TEXT or --jsonl, not both")
        _classify_jsonl(conf, explain)
        return
    if text is None or text == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageProblem("give the message TEXT, pipe it on stdin, or use --jsonl")
        text = sys.stdin.read()
    _show_classification(_classify_one(conf, text, subject, to), as_json, explain)


def _show_classification(result: Any, as_json: bool, explain: bool,
                         extra: dict[str, Any] | None = None, notes: tuple[str, ...] = ()) -> None:
    """One way to print what a message was understood as, for TEXT and for --eml alike:
    JSON (with `extra` fields), or plain lines (with `notes`), the evidence on --explain."""
    if as_json:
        data: dict[str, Any] = {"intents": list(result.intents), "language": result.language,
                                "unclear": result.unclear,
                                "possible_request": result.possible_request}
        if result.triage:
            data["triage"] = result.triage
        data.update(extra or {})
        if explain:
            data["scores"] = [
                {"intent": s.intent, "confidence": round(s.confidence, 3), "evidence": list(s.evidence)}
                for s in result.scores
            ]
        emit_json(data)
        return
    labels = ", ".join(result.intents) if result.intents else ("unclear" if result.unclear else "none")
    click.echo(f"intents: {labels}")
    click.echo(f"language: {result.language}")
    for note in notes:
        click.echo(note)
    if explain:
        click.echo(result.explain())


def _read_eml(source: str, limit: int) -> bytes:
    """The raw message from FILE or stdin ('-'); at most ``limit`` bytes, else a usage error.

    Reads ``limit + 1`` bytes at most, so an endless source (/dev/zero) is refused, not read.
    """
    name = "stdin" if source == "-" else source
    try:
        if source == "-":
            if sys.stdin is None:
                raise UsageProblem("--eml -: no standard input")
            stream = getattr(sys.stdin, "buffer", None)
            data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1)
            data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        else:
            with open(source, "rb") as handle:
                data = handle.read(limit + 1)
    except IsADirectoryError:
        raise UsageProblem(f"--eml {name}: is a folder, not a message file") from None
    except FileNotFoundError:
        raise UsageProblem(f"--eml {name}: no such file") from None
    except OSError as exc:
        raise UsageProblem(f"--eml {name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limit:
        raise UsageProblem(f"--eml {name}: larger than smtp.max_message_bytes ({limit} bytes)")
    return data


def _classify_eml(conf: Settings, source: str, explain: bool, as_json: bool) -> None:
    """Parse a raw message as intake does, then classify its subject and new text."""
    from .mail.parse import parse_mail
    from .understand.pipeline import understand_text

    mail = parse_mail(_read_eml(source, conf.smtp.max_message_bytes))
    org = next((o for o in map(conf.organization_for_address, mail.to + mail.cc) if o), None)
    result = understand_text(mail.text, subject=mail.subject,
                             default_language=org.language if org else "nb")
    extra = {"subject": mail.subject, "from": mail.from_addr, "from_name": mail.from_name,
             "org": org.id if org else None, "auto": mail.auto, "problems": list(mail.problems)}
    notes = (f"auto: {mail.auto} (the intake never answers it)",) if mail.auto else ()
    _show_classification(result, as_json, explain, extra=extra, notes=notes)


def _classify_jsonl(conf: Settings, explain: bool) -> None:
    failures = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("a line must be a JSON object")
            body = item.get("body") or ""
            subject = item.get("subject") or ""
            to = item.get("to")
            if isinstance(to, list):
                to = to[0] if to else None
            if not isinstance(body, str) or not isinstance(subject, str):
                raise ValueError("subject and body must be strings")
        except (ValueError, RecursionError) as exc:
            failures += 1
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            click.echo(json.dumps({"id": None, "line": number, "error": reason}))
            continue
        result = _classify_one(conf, body, subject, to if isinstance(to, str) else None)
        out: dict[str, Any] = {"id": item.get("id"), "intents": list(result.intents),
                               "language": result.language,
                               "possible_request": result.possible_request}
        if explain:
            out["unclear"] = result.unclear
            out["evidence"] = {s.intent: list(s.evidence) for s in result.scores}
        click.echo(json.dumps(out, ensure_ascii=False))
    if failures:
        click.echo(f"dsr: error: {failures} input line(s) were not valid JSON objects", err=True)
        sys.exit(EXIT_USAGE)


# -- cases --------------------------------------------------------------------------------------


@cli.group()
def cases() -> None:
    """List, show and act on cases (each action is an audit event)."""


@cases.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of cases.")
@click.option("--state", type=click.Choice(case_engine.STATES), help="Only cases in this state.")
@click.option("--org", "org_id", help="Only cases of this organisation.")
@click.option("--assignee", metavar="WHO", help="Only cases assigned to WHO.")
@config_option
def cases_list(as_json: bool, state: str | None, org_id: str | None,
               assignee: str | None) -> None:
    """List cases, oldest first."""
    with store_session(write=False) as (conf, session):
        if org_id is not None:
            conf.organization(org_id)
        found = [case_engine.case_summary(c) for c in
                 case_engine.list_cases(session, state=state, org=org_id, assignee=assignee)]
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no cases")
        return
    rows = [[c["ref"], c["org"], c["state"], ",".join(c["intents"]) or ("unclear" if c["unclear"] else "-"),
             c["due"] or "-", "" if c["days_left"] is None else str(c["days_left"]),
             "yes" if c["verified"] else "no", c["channel"]] for c in found]
    click.echo(table(rows, ["REF", "ORG", "STATE", "INTENTS", "DUE", "DAYS LEFT", "VERIFIED", "CHANNEL"]))


@cases.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the case as JSON.")
@config_option
def cases_show(ref: str, as_json: bool) -> None:
    """One case with its messages, drafts, erasure checklist and audit events."""
    with store_session(write=False) as (_conf, session):
        data = case_engine.case_details(session, case_engine.get_case(session, ref))
    if as_json:
        emit_json(data)
        return
    _print_case(data)


def _print_case(data: dict[str, Any]) -> None:
    intents = ", ".join(data["intents"]) or ("unclear" if data["unclear"] else "none")
    click.echo(f"{data['ref']}  {data['org']}  {data['state']}")
    click.echo(f"  requester:  {data['requester_name'] or ''} <{data['requester'] or '-'}>")
    click.echo(f"  intents:    {intents} ({data['language']})")
    click.echo(f"  received:   {data['received_at']} via {data['channel']}")
    ext = f" (extended: {data['extension_reason']})" if data["extended"] else ""
    click.echo(f"  due:        {data['due'] or 'not started'}{ext}")
    verified = f"yes ({data['verification_method']})" if data["verified"] else (
        f"no ({data['verification_method']})" if data["verification_method"] else "no")
    click.echo(f"  verified:   {verified}")
    click.echo(f"  assignee:   {data['assignee'] or 'nobody'}")
    if data["erasure_tasks"]:
        click.echo("  erasure:")
        for t in data["erasure_tasks"]:
            law = f" ({t['law']})" if t["law"] else ""
            click.echo(f"    [{t['state']}] {t['system']}{law}")
    for d in data["drafts"]:
        edited = " (edited; generated text kept)" if d["edited"] else ""
        click.echo(f"  draft {d['id']} [{d['state']}] {d['kind']}: {d['subject']}{edited}")
    click.echo("  events:")
    for e in data["events"]:
        click.echo(f"    {e['at']}  {e['kind']:<24} {e['actor']}")


def _short(limit: int) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback refusing values longer than the column that keeps them."""
    def check(_ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise click.BadParameter(f"longer than {limit} characters", param=param)
        if isinstance(value, str) and not value.strip() and param.required:
            raise click.BadParameter("must not be empty", param=param)
        return value
    return check


def _by_option(func: F) -> F:
    return click.option("--by", "by", required=True, metavar="WHO", callback=_short(200),
                        help="Who is acting (recorded in the audit trail).")(func)


def _now_option(func: F) -> F:
    return click.option("--now", "now_text", metavar="ISO", hidden=False,
                        help="Act as if it were this moment (default: now).")(func)


@cases.command("verify")
@click.argument("ref")
@click.option("--method", required=True, type=click.Choice(case_engine.VERIFICATION_METHODS),
              help="How identity was checked. Never keep a copy of an ID document.")
@_by_option
@_now_option
@config_option
def cases_verify(ref: str, method: str, by: str, now_text: str | None) -> None:
    """Record that the requester's identity was verified."""
    now = parse_moment(now_text, "--now")
    checked_settings()
    with store_session() as (conf, session):
        case = workflow.verify(session, conf, ref, method, by, now=now)
        click.echo(f"{case.ref} verified ({method}) by {by}; reply drafted for review")


@cases.command("extend")
@click.argument("ref")
@click.option("--reason", required=True, help="Why more time is needed (the requester is told).")
@_by_option
@_now_option
@config_option
def cases_extend(ref: str, reason: str, by: str, now_text: str | None) -> None:
    """Extend the deadline by two months; allowed only until the extension notice date."""
    now = parse_moment(now_text, "--now")
    checked_settings()
    with store_session() as (conf, session):
        case = workflow.extend(session, conf, ref, reason, by, now=now)
        click.echo(f"{case.ref} extended to {case.due.isoformat() if case.due else '-'}; "
                   "extension notice drafted for review")


@cases.command("assign")
@click.argument("ref")
@click.option("--to", "assignee", metavar="WHO", callback=_short(200),
              help="The staff member who carries the case: a Slack user ID (U…, mentioned in "
                   "escalations) or a name.")
@click.option("--nobody", is_flag=True, help="Take the case back from whoever had it.")
@_by_option
@config_option
def cases_assign(ref: str, assignee: str | None, nobody: bool, by: str) -> None:
    """Give a case to one staff member; escalations mention them."""
    if nobody == bool(assignee and assignee.strip()):
        raise click.UsageError("give either --to WHO or --nobody")
    with store_session() as (_conf, session):
        case = case_engine.assign(session, ref, None if nobody else assignee, by)
        click.echo(f"{case.ref} assigned to {case.assignee or 'nobody'} by {by}")


@cases.command("close")
@click.argument("ref")
@_by_option
@click.option("--reason", default=None, help="Optional note for the audit trail.")
@config_option
def cases_close(ref: str, by: str, reason: str | None) -> None:
    """Close a case."""
    with store_session() as (_conf, session):
        case = case_engine.close(session, ref, by, reason=reason)
        click.echo(f"{case.ref} closed by {by}")


@cases.command("reopen")
@click.argument("ref")
@_by_option
@click.option("--reason", default=None, help="Optional note for the audit trail.")
@config_option
def cases_reopen(ref: str, by: str, reason: str | None) -> None:
    """Reopen a closed or rejected case."""
    with store_session() as (_conf, session):
        case = case_engine.reopen(session, ref, by, reason=reason)
        click.echo(f"{case.ref} reopened ({case.state}) by {by}")


@cases.command("new")
@click.option("--org", "org_id", required=True, help="Organisation the request was made to.")
@click.option("--requester", required=True, metavar="EMAIL", help="The person's email address.")
@click.option("--name", "requester_name", default=None, help="The person's name.")
@click.option("--received", "received_text", default=None, metavar="ISO",
              help="When the request was made (default: now); the deadline runs from it.")
@click.option("--channel", default="phone",
              type=click.Choice(STAFF_CHANNELS),
              help="How the request came in.")
@click.option("--text", default=None, help="What they asked, in their words (classified).")
@click.option("--intent", "intents", multiple=True,
              type=click.Choice(INTENTS),
              help="What they asked for (repeatable); overrides --text classification.")
@_by_option
@click.option("--json", "as_json", is_flag=True, help="Print the new case as JSON.")
@config_option
def cases_new(org_id: str, requester: str, requester_name: str | None, received_text: str | None,
              channel: str, text: str | None, intents: tuple[str, ...], by: str,
              as_json: bool) -> None:
    """Log a request received by phone, chat, letter or in person."""
    check_address(requester, "--requester")
    if requester_name is not None and len(requester_name) > MAX_NAME_CHARS:
        raise UsageProblem(f"--name: longer than {MAX_NAME_CHARS} characters")
    if text is not None and len(text) > MAX_REQUEST_CHARS:
        raise UsageProblem(f"--text: longer than {MAX_REQUEST_CHARS} characters; keep the request, "
                           "not the whole conversation")
    received = parse_moment(received_text, "--received") or datetime.now(timezone.utc)
    checked_settings()
    with store_session() as (conf, session):
        case = workflow.open_request(
            session, conf, org_id=org_id, channel=channel, received_at=received,
            requester=requester, requester_name=requester_name, body=text or "",
            intents=list(intents) if intents else None, actor=by,
        )
        summary = case_engine.case_summary(case)
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"{summary['ref']} opened ({summary['state']}), due {summary['due'] or 'at verification'}")


@cli.group()
def messages() -> None:
    """Mail that opened no case: what the classifier was sure asked for nothing, and what was
    ignored or failed. A person who judges one a request opens its case here."""


@messages.command("list")
@click.option("--all", "every", is_flag=True,
              help="Every ignored or failed message (auto-replies, unrouted, broken), not only "
                   "those read as no request.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@config_option
def messages_list(every: bool, limit: int, as_json: bool) -> None:
    """List incoming mail that opened no case, newest first."""
    from . import intake

    with store_session(write=False) as (_conf, session):
        found = [{"id": m.id, "received_at": m.received_at.isoformat(), "status": m.status,
                  "reason": m.auto or (m.error or "").split(":")[0] or None,
                  "from": intake.sender_of(m), "subject": m.subject or ""}
                 for m in intake.set_aside(session, reason=None if every else intake.NOT_A_REQUEST,
                                           limit=limit)]
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no messages")
        return
    rows = [[str(m["id"]), m["received_at"][:16].replace("T", " "), m["status"], m["reason"] or "-",
             m["from"] or "-", m["subject"][:60]] for m in found]
    click.echo(table(rows, ["ID", "RECEIVED (UTC)", "STATUS", "REASON", "FROM", "SUBJECT"]))


@messages.command("open")
@click.argument("message_id", type=int)
@click.option("--intent", "intents", multiple=True, type=click.Choice(INTENTS),
              help="What the person asked for (repeatable); without it the case opens unclear.")
@_by_option
@_now_option
@config_option
def messages_open(message_id: int, intents: tuple[str, ...], by: str, now_text: str | None) -> None:
    """Open a case from a message that opened none (a request the classifier missed): the
    deadline runs from when the mail reached us and the requester gets the receipt."""
    from . import intake

    now = parse_moment(now_text, "--now")
    checked_settings()
    with store_session() as (conf, session):
        case = intake.open_from_message(session, conf, message_id, by,
                                        list(intents) or None, now=now)
        summary = case_engine.case_summary(case)
    click.echo(f"{summary['ref']} opened ({summary['state']}) from message {message_id}, "
               f"due {summary['due'] or 'at verification'}")


MAX_ADDRESS_CHARS = 254  # RFC 5321's limit on a forward path
MAX_NAME_CHARS = 200
MAX_REQUEST_CHARS = 20_000


def check_address(value: str, option: str) -> None:
    """One line for an address the store or a mail server could not take; never echo the
    value itself, it is personal data."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or "." not in domain or any(ch.isspace() for ch in value.strip()):
        raise UsageProblem(f"{option}: not an email address")
    if len(value.strip()) > MAX_ADDRESS_CHARS:
        raise UsageProblem(f"{option}: longer than {MAX_ADDRESS_CHARS} characters")


@cases.command("collect")
@click.argument("ref")
@click.option("--system", required=True, callback=_short(200),
              help="The system from the access checklist.")
@click.option("--none", "none_held", is_flag=True,
              help="No data about the person is held in that system.")
@click.option("--note", default=None, help="Optional note (e.g. where the export was saved).")
@_by_option
@config_option
def cases_collect(ref: str, system: str, none_held: bool, note: str | None, by: str) -> None:
    """Mark one system of an access case as collected for the copy (Art. 15(3)), or as holding
    nothing about the person; the reply can be approved once every system is settled."""
    conf = checked_settings()
    with store_session() as (_conf, session):
        item = workflow.tick(session, conf, ref, "access", system, "none" if none_held else "done",
                             by, note=note)
        click.echo(f"{ref.upper()}: {item.system} {'holds nothing' if none_held else 'collected'}")


@cases.command("suppress")
@click.argument("ref")
@click.option("--system", required=True, callback=_short(200),
              help="The marketing system from the suppression checklist.")
@click.option("--note", default=None, help="Optional note.")
@_by_option
@config_option
def cases_suppress(ref: str, system: str, note: str | None, by: str) -> None:
    """Mark marketing to the person as stopped in one system (Art. 21(3)); the opt-out
    confirmation then says so, and only for the systems ticked."""
    conf = checked_settings()
    with store_session() as (_conf, session):
        item = workflow.tick(session, conf, ref, "suppression", system, "done", by, note=note)
        click.echo(f"{ref.upper()}: marketing stopped in {item.system}")


@cases.command("erasure")
@click.argument("ref")
@click.option("--system", required=True, callback=_short(200),
              help="The system from the erasure checklist.")
@click.option("--done", "outcome", flag_value="done", help="The person's data was deleted there.")
@click.option("--kept", "outcome", flag_value="kept", help="Data is kept because a law requires it.")
@click.option("--suppressed", "outcome", flag_value="suppressed",
              help="A marketing system: the person is suppressed there (kept on the do-not-contact "
                   "list), not deleted, so marketing stays stopped.")
@click.option("--law", default=None, callback=_short(200),
              help="With --kept: the provision, e.g. 'bokføringsloven § 13'.")
@click.option("--until", "until_text", default=None, metavar="DATE",
              help="With --kept: the date the retention ends (the reply tells the requester).")
@click.option("--note", default=None, help="Optional note.")
@_by_option
@config_option
def cases_erasure(ref: str, system: str, outcome: str | None, law: str | None,
                  until_text: str | None, note: str | None, by: str) -> None:
    """Settle one system of an erasure case's checklist; a pending reply is redrafted from it."""
    if outcome is None:
        raise UsageProblem("say --done, --kept or --suppressed")
    until = None
    if until_text is not None:
        try:
            until = date.fromisoformat(until_text.strip())
        except ValueError:
            raise UsageProblem(f"--until: {until_text!r} is not a date (YYYY-MM-DD)") from None
    with store_session() as (_conf, session):
        conf = checked_settings()
        task = workflow.settle(session, conf, ref, system, outcome, by, law=law, note=note,
                               until=until)
        click.echo(f"{ref.upper()}: {task.system} {task.state}")


@cases.command("rectify")
@click.argument("ref")
@click.option("--what", required=True, callback=_short(2000),
              help="What was corrected, as the requester is told it (e.g. 'address: Nygata 15').")
@_by_option
@config_option
def cases_rectify(ref: str, what: str, by: str) -> None:
    """Record what was corrected (Art. 16) on a verified rectification case; the reply is
    redrafted to state it. Repeat for each correction."""
    checked_settings()
    with store_session() as (conf, session):
        draft = workflow.rectify(session, conf, ref, what, by)
        click.echo(f"{ref.upper()}: correction recorded; draft {draft.id} written for review")


# -- drafts -------------------------------------------------------------------------------------


@cli.group()
def drafts() -> None:
    """The review desk when Slack is off: list, show, approve, reject or redraft drafted
    replies."""


@drafts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of drafts.")
@click.option("--all", "show_all", is_flag=True, help="Include decided drafts, not only pending ones.")
@config_option
def drafts_list(as_json: bool, show_all: bool) -> None:
    """Drafts waiting for review (oldest first)."""
    from sqlalchemy import select

    from .store.models import Case, Draft

    with store_session(write=False) as (_conf, session):
        statement = select(Draft, Case).join(Case, Case.id == Draft.case_id).order_by(Draft.id)
        if not show_all:
            statement = statement.where(Draft.state == "pending")
        found = [
            {"id": d.id, "ref": c.ref, "org": c.org, "kind": d.kind, "language": d.language,
             "state": d.state, "case_state": c.state, "verified": c.verified,
             "due": c.due.isoformat() if c.due else None, "subject": d.subject, "body": d.body,
             "created_at": d.created_at.isoformat()}
            for d, c in session.execute(statement).all()
        ]
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no drafts waiting")
        return
    rows = [[d["ref"], d["kind"], d["state"], d["case_state"], d["due"] or "-", d["subject"][:60]]
            for d in found]
    click.echo(table(rows, ["REF", "KIND", "STATE", "CASE", "DUE", "SUBJECT"]))


@drafts.command("approve")
@click.argument("ref")
@_by_option
@click.option("--edit-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Send this text instead of the drafted body.")
@config_option
def drafts_approve(ref: str, by: str, edit_file: Path | None) -> None:
    """Approve the pending draft of a case (needs a verified requester)."""
    edited = read_text_file(edit_file, "--edit-file") if edit_file is not None else None
    checked_settings()
    with store_session() as (conf, session):
        draft = workflow.approve(session, conf, ref, by, edited_body=edited)
        click.echo(f"{ref.upper()}: draft {draft.id} approved by {by}; queued for sending")


@drafts.command("reject")
@click.argument("ref")
@click.option("--reason", required=True, help="Why the request is refused (shown to the requester).")
@_by_option
@config_option
def drafts_reject(ref: str, reason: str, by: str) -> None:
    """Reject the pending draft, and with it the request: a refusal letter (the reason, and the
    routes to Datatilsynet and the courts, Art. 12(4)) is drafted for review. Rejecting a
    pending notice (extension, refusal) only drops that notice."""
    checked_settings()
    with store_session() as (conf, session):
        draft = workflow.reject(session, conf, ref, reason, by)
        if case_engine.is_notice(draft.kind, case_engine.get_case(session, ref)):
            click.echo(f"{ref.upper()}: {draft.kind} notice {draft.id} rejected by {by}")
        else:
            click.echo(f"{ref.upper()}: draft {draft.id} rejected by {by}; request rejected; "
                       "refusal letter drafted for review")


@drafts.command("redraft")
@click.argument("ref")
@_by_option
@config_option
def drafts_redraft(ref: str, by: str) -> None:
    """Write a fresh reply from the case as it stands (after a reopen, or after the policy or
    the record was edited); it supersedes the pending reply. Refused (exit 1) for a case
    awaiting verification, approved, answered, closed or rejected."""
    checked_settings()
    with store_session() as (conf, session):
        draft = workflow.redraft(session, conf, ref, by)
        click.echo(f"{ref.upper()}: draft {draft.id} ({draft.kind}) written for review")


@drafts.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the drafts and checklist as JSON.")
@config_option
def drafts_show(ref: str, as_json: bool) -> None:
    """The full pending draft(s) of a case (or its newest draft when none waits): subject, body,
    quoted sections (marked when `dsr policies check` flags one), lines for staff, earlier
    versions, and the erasure checklist."""
    from . import desk

    checked_settings()  # the policy and record it reads: a broken file is one line, exit 2
    with store_session(write=False) as (conf, session):
        view = desk.desk_view(session, conf, ref)
    if as_json:
        emit_json(view)
        return
    _print_desk(view)


def _print_desk(view: dict[str, Any]) -> None:
    c = view["case"]
    left = "" if c["days_left"] is None else f" ({c['days_left']} days left)"
    click.echo(f"{c['ref']}  {c['org']}  {c['state']}  due {c['due'] or '-'}{left}  "
               f"verified: {'yes' if c['verified'] else 'no'}")
    if not view["drafts"]:
        click.echo("no drafts")
    elif not view["pending"]:
        click.echo("no draft waiting for review; the newest draft:")
    for d in view["drafts"]:
        click.echo("")
        click.echo(f"== draft {d['id']} [{d['state']}] {d['kind']} ({d['language']})")
        click.echo(f"Subject: {d['subject']}")
        click.echo("")
        click.echo(d["body"].rstrip("\n"))
        click.echo("")
        if d["sections"]:
            click.echo("Quoted sections:")
            for s in d["sections"]:
                mark = "  FLAGGED: " + "; ".join(s["findings"]) if s["flagged"] else ""
                click.echo(f"  «{s['heading']}» ({s['id']}){mark}")
            if any(s["flagged"] for s in d["sections"]):
                click.echo("  WARNING: this draft quotes a passage `dsr policies check` flags; "
                           "edit it out before approving")
        else:
            click.echo("Quoted sections: none")
        if d["staff_lines"]:
            click.echo("Line for staff: yes (cannot be approved until it is settled or edited out)")
            for line in d["staff_lines"]:
                click.echo(f"  {line}")
        else:
            click.echo("Line for staff: none")
        if d["edited"]:
            click.echo(f"Edited by {d['decided_by']}; the generated text (version 1) was:")
            click.echo(d["versions"][0]["body"].rstrip("\n"))
    if view["erasure_tasks"]:
        click.echo("")
        click.echo("Erasure checklist:")
        rows = [[t["system"], t["state"], t["law"] or "", t["until"] or ""]
                for t in view["erasure_tasks"]]
        click.echo(table(rows, ["SYSTEM", "STATE", "LAW", "UNTIL"]))
    if view["earlier"]:
        click.echo("")
        click.echo("Earlier drafts:")
        for e in view["earlier"]:
            who = f" by {e['decided_by']}" if e["decided_by"] else ""
            edited = ", edited" if e["edited"] else ""
            click.echo(f"  draft {e['id']} [{e['state']}{who}{edited}] {e['kind']} "
                       f"({e['language']}) {e['created_at']}")


# -- audit ----------------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Check the audit trail."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@config_option
def audit_verify(as_json: bool) -> None:
    """Check every case's hash chain of events: exit 0 when intact, 1 naming what was changed,
    removed or reordered."""
    with store_session(write=False) as (_conf, session):
        report = verify_trail(session)
    if as_json:
        emit_json(report.as_json())
    elif report.intact:
        click.echo(f"audit trail intact: {report.events} events in {report.cases} cases")
    else:
        for problem in report.problems:
            where = problem.ref or ("events without a case" if problem.case_id is None
                                    else f"case id {problem.case_id}")
            click.echo(f"{where}: {problem.problem}: {problem.message}")
        click.echo(f"audit trail BROKEN in {len(report.problems)} chain(s) "
                   f"({report.events} events in {report.cases} cases)")
    if not report.intact:
        sys.exit(EXIT_REFUSED)


EXIT_INTERNAL = 3


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click's own usage errors already exit 2.

    The last resort: an error no command foresaw still gives one line, never a traceback,
    because a traceback can carry the values it was working on (addresses, personal numbers).
    The tests drive `cli` directly so such an error fails them instead of hiding here."""
    try:
        cli.main(args=argv, prog_name="dsr", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001
        click.echo(f"dsr: internal error ({type(exc).__name__}); nothing more is shown because "
                   "it may hold personal data; please report it", err=True)
        sys.exit(EXIT_INTERNAL)



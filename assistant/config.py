"""Configuration: one TOML file laid over embedded defaults, every key overridable by environment.

Precedence, highest first: environment (``DSR_SECTION__KEY``), the config file (``--config`` or
``DSR_CONFIG``), the embedded defaults in ``default_config.toml``. Validation happens once, at
start, so a typo in a key or a bad value stops the program with one line that names the key
instead of failing hours later inside a channel.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from datetime import date, datetime
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from . import resources

DEFAULTS_FILE = resources.default_config()


class ConfigError(Exception):
    """A configuration problem an operator must fix; its text names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The database kinds dsr ships a driver for; anything else fails at start with one line.
_URL_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg",
                "postgresql+psycopg": "postgresql+psycopg"}
_URL_HINT = "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"


class DatabaseSettings(_Section):
    url: str = "sqlite:///dsr.db"

    @field_validator("url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        """Only the kinds we ship a driver for; a SQLite file needs an existing folder (a typo
        in the path should not silently create a second, empty database somewhere else)."""
        scheme, sep, rest = value.strip().partition("://")
        if not sep or not rest and scheme != "sqlite":
            raise ValueError(f"{value!r} is not a database URL; {_URL_HINT}")
        kind = _URL_SCHEMES.get(scheme.lower())
        if kind is None:
            raise ValueError(f"unsupported database kind {scheme!r}; {_URL_HINT}")
        if kind == "sqlite":
            path = rest[1:] if rest.startswith("/") else rest
            path = path.split("?", 1)[0]
            path = path.removeprefix("file:")  # a SQLite URI (uri=true), e.g. ?mode=ro
            if path and path != ":memory:":
                folder = Path(path).expanduser().parent
                if not folder.is_dir():
                    raise ValueError(f"the folder {str(folder)!r} of the SQLite file does not exist")
            return value.strip()
        return f"{kind}://{rest}"


class SmtpSettings(_Section):
    listen: str = "127.0.0.1:8025"
    max_message_bytes: int = Field(26_214_400, gt=0)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8025")
        return value


class OutboundSettings(_Section):
    host: str | None = None
    port: int = Field(25, gt=0, lt=65536)
    from_address: str = "kundesenter@branninfo.no"
    maildir: str = "outbox"
    username: str | None = None
    password: str | None = None
    starttls: bool = False


class ImapSettings(_Section):
    host: str
    port: int = Field(993, gt=0, lt=65536)
    tls: bool = True
    username: str
    password: str | None = None
    folder: str = "INBOX"
    archive_folder: str = "Processed"
    # "xoauth2": log in with an OAuth access token (Microsoft 365 takes nothing else), got by the
    # client-credentials grant at oauth2_token_url, or printed by oauth2_token_command.
    auth: Literal["password", "xoauth2"] = "password"
    oauth2_token_url: str | None = None
    oauth2_client_id: str | None = None
    oauth2_client_secret: str | None = None
    oauth2_scope: str | None = "https://outlook.office365.com/.default"
    oauth2_token_command: str | None = None

    @model_validator(mode="after")
    def _credentials(self) -> ImapSettings:
        """Say at start which key is missing, not at the first login an hour later."""
        if self.auth == "password":
            if not self.password:
                raise ValueError('password: required (or auth = "xoauth2" with an OAuth token '
                                 'source)')
            return self
        if self.oauth2_token_command:
            if self.oauth2_token_url:
                raise ValueError("oauth2_token_command and oauth2_token_url: choose one")
            return self
        missing = [key for key in ("oauth2_token_url", "oauth2_client_id", "oauth2_client_secret")
                   if not getattr(self, key)]
        if missing:
            raise ValueError(f'auth = "xoauth2" needs oauth2_token_command, or '
                             f'oauth2_token_url, oauth2_client_id and oauth2_client_secret '
                             f'(missing: {", ".join(missing)})')
        url = urlsplit(self.oauth2_token_url or "")
        # The client secret travels in the request: plain http only to this machine.
        local = url.hostname in ("127.0.0.1", "::1", "localhost")
        if not url.hostname or not (url.scheme == "https" or (url.scheme == "http" and local)):
            raise ValueError("oauth2_token_url: must be an https:// address")
        return self


class SlackSettings(_Section):
    bot_token: str | None = None
    app_token: str | None = None
    signing_secret: str | None = None
    http_port: int = Field(3000, ge=0, lt=65536)
    api_url: str = "https://slack.com/api/"
    review_channel: str | None = None
    manager_channel: str | None = None
    approvers: list[str] = []
    # Chat intake: a direct message to the bot, or a message in this channel, opens a case for
    # `intake_org` (default: the first organisation).
    intake_channel: str | None = None
    intake_org: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)


class SchedulerSettings(_Section):
    sweep_minutes: int = Field(5, gt=0)
    digest_cron: str = "0 8 * * mon-fri"  # Europe/Oslo; six fields = seconds first
    # Working days before `due` when staff are reminded (the review channel, else managers).
    ladder: list[int] = Field(default_factory=lambda: [7, 3, 1])
    verification_reminder_days: int = Field(5, ge=1)  # one reminder to the requester
    checklist_warning_days: int = Field(2, ge=0)  # an unsettled checklist is named from here
    # For drills and tests only: seconds instead of minutes, and a fixed "now".
    sweep_seconds: float | None = Field(None, gt=0)
    now: datetime | None = None
    drill_speed: float = Field(1.0, gt=0)  # with `now`: simulated seconds per real second

    @field_validator("ladder")
    @classmethod
    def _positive_ladder(cls, value: list[int]) -> list[int]:
        if any(step < 1 for step in value):
            raise ValueError("ladder steps are working days before due, each at least 1")
        return sorted(set(value), reverse=True)


class CaseSettings(_Section):
    reference_prefix: str = Field("DSR", pattern=r"^[A-Z][A-Z0-9]{1,9}$")
    verification_clock: Literal["runs", "from_verification"] = "runs"
    opt_out_skips_verification: bool = True
    holiday_country: str = "NO"
    holiday_subdiv: str | None = None
    extra_closed_dates: list[date] = []


    @model_validator(mode="after")
    def _calendar_exists(self) -> CaseSettings:
        """An unknown holiday country would fail at the first deadline; fail at start instead."""
        from .deadlines import Calendar

        try:
            Calendar(self.holiday_country, self.holiday_subdiv, self.extra_closed_dates)
        except ValueError as exc:
            raise ValueError(f"holiday_country/holiday_subdiv: {exc}") from None
        return self


class LogSettings(_Section):
    """Where diagnostics go: stderr, at this level, as text or one JSON object per line.

    WARNING by default, not INFO: the one-shot commands promise exactly one line on stderr for a
    refusal or a usage error, and print their own result; a service (`dsr serve`) sets INFO.
    Addresses, phone numbers and personal numbers are redacted whatever is chosen here.
    """

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class DataSettings(_Section):
    """The operator's own data folders; each overrides the shipped one file by file."""

    intents_dir: str | None = None
    templates_dir: str | None = None
    policies_dir: str | None = None


class VerificationSettings(_Section):
    """The secret the one-time codes are hashed with (HMAC-SHA256); never in the database.

    `key_file` unset: beside a SQLite file (`dsr.db` -> `dsr.db.key`), created on first use with
    permissions 0600; on PostgreSQL `dsr-code.key` in the config file's folder. Several instances
    on one PostgreSQL database must read the same key: point `key_file` at one file deployed to
    each (a mounted secret)."""

    key_file: str | None = None


class Organization(_Section):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    addresses: list[str] = Field(min_length=1)
    policy: str | None = None
    language: Literal["nb", "nn", "en", "sv", "da"] = "nb"
    promise_days: int = Field(30, ge=1, le=90)
    systems: list[str] = []
    managers: list[str] = []

    @field_validator("addresses")
    @classmethod
    def _lowercase_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in address:
                raise ValueError(f"{address!r} is not an email address")
        return [a.strip().lower() for a in value]


class Settings(BaseSettings):
    """The whole configuration; see README for every key."""

    model_config = SettingsConfigDict(
        env_prefix="DSR_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    outbound: OutboundSettings = OutboundSettings()
    imap: ImapSettings | None = None
    slack: SlackSettings = SlackSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    cases: CaseSettings = CaseSettings()
    log: LogSettings = LogSettings()
    data: DataSettings = DataSettings()
    verification: VerificationSettings = VerificationSettings()
    organizations: list[Organization] = Field(min_length=1)
    config_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    config_file: Path | None = Field(default=None, exclude=True)  # for file:line in messages

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        # Environment beats the file; the file arrives as init kwargs.
        return env_settings, init_settings

    @field_validator("organizations")
    @classmethod
    def _unique_ids_and_addresses(cls, orgs: list[Organization]) -> list[Organization]:
        seen_ids: set[str] = set()
        seen_addresses: dict[str, str] = {}
        for org in orgs:
            if org.id in seen_ids:
                raise ValueError(f"organisation id {org.id!r} appears twice")
            seen_ids.add(org.id)
            for address in org.addresses:
                if address in seen_addresses:
                    raise ValueError(
                        f"address {address} belongs to both {seen_addresses[address]} and {org.id}"
                    )
                seen_addresses[address] = org.id
        return orgs

    # -- lookups the rest of the code needs -------------------------------------------------
    def organization(self, org_id: str) -> Organization:
        for org in self.organizations:
            if org.id == org_id:
                return org
        known = ", ".join(o.id for o in self.organizations)
        raise ConfigError(f"unknown organisation {org_id!r} (known: {known})")

    def organization_for_address(self, address: str) -> Organization | None:
        address = address.strip().lower()
        for org in self.organizations:
            if address in org.addresses:
                return org
        return None

    def resolve_path(self, value: str | None) -> Path | None:
        """A path from the config file: a relative one is read next to that file."""
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.config_dir / path

    def policy_path(self, org: Organization) -> Path | None:
        """The organisation's policy file: as given, next to the config file, in cwd, in the
        operator's policies folder, then shipped; None when it has none or it is nowhere."""
        if not org.policy:
            return None
        return resources.find_policy(org.policy, self.config_dir,
                                      self.resolve_path(self.data.policies_dir))


# A config file is a few KB; anything far larger is a wrong path (a log, a device, a dump).
MAX_CONFIG_BYTES = 1_048_576


def _read_toml(path: Path) -> dict[str, Any]:
    """The file as TOML; every way it can be unreadable is one ConfigError naming the file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config file {path} is not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: config file is not UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Lay a user's file over the defaults, table by table; arrays of tables replace whole."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, data: dict[str, Any]) -> str:
    first = error.errors()[0]
    location = list(first["loc"])
    # Name an organisation by its id rather than its index when we can.
    from_env = _env_source(first["loc"])
    if (len(location) >= 2 and location[0] == "organizations" and isinstance(location[1], int)
            and not from_env):
        orgs = data.get("organizations") or []
        if location[1] < len(orgs) and isinstance(orgs[location[1]], dict):
            ident = orgs[location[1]].get("id")
            if ident:
                location[1] = ident
    key = ".".join(str(part) for part in location) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"config error: {key}{from_env}: {message}{more}"


def _env_source(location: tuple[Any, ...]) -> str:
    """' (from DSR_X__Y)' when the bad value came from the environment, so the operator
    looks in the right place; environment beats the file."""
    names = [f"DSR_{'__'.join(str(p).upper() for p in location[:n])}" for n in (2, 1)]
    for name in names:
        if len(location) >= 1 and any(k.upper() == name for k in os.environ):
            return f" (from {name})"
    return ""


# DSR_ variables that are not settings: the config file's path and the test suite's servers.
_NOT_SETTINGS = ("DSR_CONFIG",)
_NOT_SETTINGS_PREFIXES = ("DSR_TEST_",)


def _known_env_names() -> dict[str, Any]:
    """Every DSR_SECTION and DSR_SECTION__KEY the settings understand, with the field's type."""
    known: dict[str, Any] = {}
    for section, info in Settings.model_fields.items():
        if info.exclude:
            continue
        known[f"DSR_{section.upper()}"] = info.annotation
        model = _section_model(info.annotation)
        if model is not None:
            for key, field in model.model_fields.items():
                known[f"DSR_{section.upper()}__{key.upper()}"] = field.annotation
    return known


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The section's model class, also for an optional section (`ImapSettings | None`)."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _wants_json(annotation: Any) -> bool:
    """Lists, tables and sections arrive from the environment as JSON."""
    text = str(annotation)
    return (text.startswith(("list", "dict", "typing.List", "typing.Dict"))
            or _section_model(annotation) is not None)


def check_environment(environ: os._Environ[str] | dict[str, str] | None = None) -> None:
    """A misspelt DSR_ variable would be ignored silently and the command would run on the
    defaults (the wrong database): refuse it, and a list that is not JSON, naming the variable."""
    environ = os.environ if environ is None else environ
    known = _known_env_names()
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith("DSR_") or upper in _NOT_SETTINGS:
            continue
        if upper.startswith(_NOT_SETTINGS_PREFIXES):
            continue
        if upper not in known:
            guess = get_close_matches(upper, list(known), n=1)
            hint = f" (did you mean {guess[0]}?)" if guess else ""
            raise ConfigError(f"environment variable {name}: unknown setting{hint}")
        if _wants_json(known[upper]):
            try:
                json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"environment variable {name}: not valid JSON; write lists as JSON, "
                    f"e.g. {name}='[\"U1\", \"U2\"]'"
                ) from None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate configuration; raise ConfigError with one readable line."""
    check_environment()
    data = _read_toml(DEFAULTS_FILE)
    config_dir = Path.cwd()
    config_file: Path | None = None
    chosen = path if path is not None else os.environ.get("DSR_CONFIG") or None
    if chosen:
        file_path = Path(chosen).expanduser()
        data = _merge(data, _read_toml(file_path))
        config_file = file_path.resolve()
        config_dir = config_file.parent
    try:
        return Settings(**data, config_dir=config_dir, config_file=config_file)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, data)) from None
    except SettingsError as exc:  # the environment source could not read a value
        raise ConfigError(f"config error: environment: {exc}") from None

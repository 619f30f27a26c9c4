"""The secret the one-time codes are hashed with: a key file, never the database.

A code has six digits, so a hash of it in the database, however slow, is undone offline by
trying all 10^6 codes. An HMAC-SHA256 keyed with a secret kept outside the database cannot be
tried without that secret, and costs microseconds instead of a slow hash's milliseconds.

Where the key lives (`verification.key_file`, else):
- a SQLite file database: beside it, `<database file>.key` (`dsr.db` -> `dsr.db.key`);
- PostgreSQL: `dsr-code.key` in the config file's folder (the working folder without one);
- an in-memory SQLite database: a key for this process only (the database dies with it).
A missing key file is created on first use: 32 random bytes as hex, permissions 0600, written
under a temporary name and linked into place, so processes that start together agree on one key.
Several instances sharing a PostgreSQL database must read the same key: name one file, deployed
to each host, in `verification.key_file`. A code hashed under another key is recognised by the
key's id stored beside the hash (the first 8 hex digits of a SHA-256 over the key, which tells
nothing about the key) and reported instead of being counted as a wrong code.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .config import ConfigError, Settings

log = logging.getLogger("dsr.code_key")

KEY_BYTES = 32
MIN_KEY_BYTES = 16
POSTGRES_KEY_NAME = "dsr-code.key"


@dataclass(frozen=True)
class CodeKey:
    key: bytes
    kid: str  # identifies the key, reveals nothing about it
    path: Path | None

    def digest(self, code: str, salt: str) -> str:
        mac = hmac.new(self.key, bytes.fromhex(salt) + b":" + code.encode(), hashlib.sha256)
        return mac.hexdigest()


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"dsr-code-key-id:" + key).hexdigest()[:8]


def key_path(settings: Settings) -> Path | None:
    """Where the key is read (or created); None for an in-memory SQLite database."""
    configured = settings.resolve_path(settings.verification.key_file)
    if configured is not None:
        return configured
    try:
        url = make_url(settings.database.url)
    except ArgumentError:
        raise ConfigError(f"database.url is not a database URL: {settings.database.url!r}") from None
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if url.query.get("uri") == "true" and database.startswith("file:"):
            database = database[len("file:"):].split("?", 1)[0]
        if not database or database == ":memory:" or "mode=memory" in str(url):
            return None
        db_file = Path(database).expanduser()
        return db_file.with_name(db_file.name + ".key")
    return settings.config_dir / POSTGRES_KEY_NAME


_lock = threading.Lock()
_keys: dict[str, CodeKey] = {}


def code_key(settings: Settings) -> CodeKey:
    """The key for these settings, read once per process (created when missing)."""
    path = key_path(settings)
    name = str(path.resolve()) if path is not None else ":memory:"
    with _lock:
        key = _keys.get(name)
        if key is None:
            key = _load(path)
            _keys[name] = key
        return key


def _load(path: Path | None) -> CodeKey:
    if path is None:
        key = secrets.token_bytes(KEY_BYTES)
        return CodeKey(key, key_id(key), None)
    if not path.exists():
        _create(path)
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"verification.key_file: cannot read {str(path)!r}: "
                          f"{type(exc).__name__}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"verification.key_file: {str(path)!r} does not hold a key "
                          f"(at least {MIN_KEY_BYTES} bytes as hex)")
    if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("the code key file can be read by others; chmod 600 it",
                    extra={"path": str(path)})
    return CodeKey(key, key_id(key), path)


def _create(path: Path) -> None:
    """Write a new key under a temporary name, then link it into place: a process that finds the
    file finds it whole, and of two processes creating it at once one key wins."""
    if not path.parent.is_dir():
        raise ConfigError(f"verification.key_file: the folder {str(path.parent)!r} does not exist")
    data = (secrets.token_bytes(KEY_BYTES).hex() + "\n").encode("ascii")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
            log.info("code key created", extra={"path": str(path)})
        except FileExistsError:
            pass  # another process was first: its key counts
    except OSError as exc:
        raise ConfigError(f"verification.key_file: cannot create {str(path)!r}: "
                          f"{type(exc).__name__}") from None
    finally:
        try:
            os.unlink(temporary)
        except OSError:
            pass

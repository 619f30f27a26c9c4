"""The one-time codes' key: a file outside the database, created once, 0600, shared by readers."""

from __future__ import annotations

import os
import stat

import pytest

from assistant import code_key
from assistant.config import ConfigError, load_settings


def _settings(monkeypatch, url: str, key_file: str | None = None):
    monkeypatch.setenv("DSR_DATABASE__URL", url)
    if key_file is not None:
        monkeypatch.setenv("DSR_VERIFICATION__KEY_FILE", key_file)
    return load_settings(None)


def test_a_sqlite_database_gets_its_key_beside_it_created_0600_once(tmp_path, monkeypatch):
    monkeypatch.setattr(code_key, "_keys", {})
    settings = _settings(monkeypatch, f"sqlite:///{tmp_path / 'dsr.db'}")
    key = code_key.code_key(settings)
    path = tmp_path / "dsr.db.key"
    assert key.path == path and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key.key) == code_key.KEY_BYTES
    monkeypatch.setattr(code_key, "_keys", {})  # another process reads the same key
    assert code_key.code_key(settings).key == key.key
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_configured_key_file_is_used_and_a_bad_one_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(code_key, "_keys", {})
    path = tmp_path / "shared.key"
    path.write_text("ab" * 32 + "\n")
    os.chmod(path, 0o600)
    settings = _settings(monkeypatch, "postgresql+psycopg://u@127.0.0.1/db", str(path))
    assert code_key.code_key(settings).key == bytes.fromhex("ab" * 32)
    monkeypatch.setattr(code_key, "_keys", {})
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="verification.key_file"):
        code_key.code_key(settings)


def test_postgresql_without_a_key_file_uses_the_config_folder(tmp_path, monkeypatch):
    settings = _settings(monkeypatch, "postgresql+psycopg://u@127.0.0.1/db")
    assert code_key.key_path(settings) == settings.config_dir / code_key.POSTGRES_KEY_NAME


def test_the_stored_hash_names_the_key_and_another_key_is_told_apart(tmp_path, monkeypatch):
    from assistant import workflow
    from assistant.store.models import Verification

    monkeypatch.setattr(code_key, "_keys", {})
    settings = _settings(monkeypatch, f"sqlite:///{tmp_path / 'dsr.db'}")
    key = code_key.code_key(settings)
    verification = Verification(case_id=1, method="email_code", sent_to="a@example.no")
    from datetime import datetime, timezone

    code = workflow._new_code(settings, verification, datetime.now(timezone.utc))
    assert verification.code_hash.startswith(f"hmac-sha256${key.kid}$")
    assert code not in verification.code_hash
    assert workflow._code_matches(code, verification, key) is True
    assert workflow._code_matches("000000" if code != "000000" else "111111", verification, key) is False
    other = code_key.CodeKey(b"x" * 32, code_key.key_id(b"x" * 32), None)
    assert workflow._code_matches(code, verification, other) is None
    # A code hashed before the keyed HMAC still verifies.
    verification.code_hash = workflow._pbkdf2(code, verification.salt, 2_000)
    assert workflow._code_matches(code, verification, key) is True

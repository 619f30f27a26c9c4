"""Configuration: embedded defaults, a file laid over them, environment over both, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import ConfigError, load_settings

SEED_IDS = ["branninfo", "infracomfort", "plania", "proffsecurity", "bagges"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dsr.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_the_embedded_defaults_with_five_seed_organisations():
    s = load_settings(None)
    assert [o.id for o in s.organizations] == SEED_IDS
    assert s.database.url == "sqlite:///dsr.db"
    assert s.smtp.listen == "127.0.0.1:8025"
    assert s.outbound.host is None and s.outbound.maildir == "outbox"
    assert s.imap is None and not s.slack.enabled
    assert s.organization("branninfo").addresses == ["kundesenter@branninfo.no"]
    assert s.organization("branninfo").systems == ["TMG", "Visma", "CRM"]
    assert s.organization("infracomfort").addresses == ["personvern@infracomfort.no"]
    assert s.organization("plania").addresses == ["personvern@plania.no"]
    assert s.organization("proffsecurity").addresses == ["post@proffsecurity.no"]
    assert s.organization("bagges").addresses == ["post@bagges.no"]
    assert all(o.promise_days == 30 and o.language == "nb" and o.systems for o in s.organizations)


def test_every_seed_policy_file_resolves():
    s = load_settings(None)
    for org in s.organizations:
        path = s.policy_path(org)
        assert path is not None and path.name == f"{org.id}.md" and path.exists()


def test_a_file_without_organizations_keeps_the_seeds(tmp_path):
    s = load_settings(write(tmp_path, '[database]\nurl = "sqlite:///other.db"\n'))
    assert s.database.url == "sqlite:///other.db"
    assert [o.id for o in s.organizations] == SEED_IDS


def test_organizations_in_the_file_replace_the_seeds(tmp_path):
    s = load_settings(write(tmp_path, """
[[organizations]]
id = "acme"
name = "Acme AS"
addresses = ["Privacy@Acme.no"]
promise_days = 20
"""))
    assert [o.id for o in s.organizations] == ["acme"]
    assert s.organization_for_address("privacy@ACME.no").id == "acme"


def test_environment_overrides_file_and_defaults(tmp_path, monkeypatch):
    path = write(tmp_path, '[smtp]\nlisten = "127.0.0.1:9000"\n')
    monkeypatch.setenv("DSR_SMTP__LISTEN", "0.0.0.0:2525")
    monkeypatch.setenv("DSR_SLACK__APPROVERS", '["U1", "U2"]')
    s = load_settings(path)
    assert s.smtp.listen == "0.0.0.0:2525"
    assert s.slack.approvers == ["U1", "U2"]


def test_dsr_config_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DSR_CONFIG", str(write(tmp_path, '[scheduler]\nsweep_minutes = 2\n')))
    assert load_settings(None).scheduler.sweep_minutes == 2


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[database]\nurll = "x"\n', "database.urll: unknown key"),
        ('[smtp]\nlisten = "nowhere"\n', "smtp.listen"),
        ('[smtp]\nmax_message_bytes = -1\n', "smtp.max_message_bytes"),
        ('[cases]\nverification_clock = "sometimes"\n', "cases.verification_clock"),
        ('[[organizations]]\nid = "x"\nname = "X"\naddresses = ["not-an-address"]\n',
         "organizations.x.addresses"),
        ('[[organizations]]\nid = "x"\nname = "X"\naddresses = ["a@x.no"]\n'
         '[[organizations]]\nid = "x"\nname = "Y"\naddresses = ["b@x.no"]\n', "appears twice"),
        ("[imap]\nhost = 'imap.x.no'\n", "imap.username"),
    ],
)
def test_a_bad_key_is_named_in_one_line(tmp_path, text, named):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "x = ["))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_unknown_organisation_lookup_lists_the_known_ones():
    with pytest.raises(ConfigError, match="branninfo"):
        load_settings(None).organization("nope")

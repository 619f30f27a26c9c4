"""Reading a mailbox that takes only OAuth (Microsoft 365): SASL XOAUTH2 with a token from the
client-credentials grant or from a command, against Dovecot checking each token at a local
introspection endpoint, and a local token endpoint that answers as Microsoft's does."""

from __future__ import annotations

import json
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import test_imap
from imap_servers import USER, DovecotOAuth, Pymap, dovecot_missing
from test_imap import Running, append, count, folder, log_text, mail, wait_until

from assistant.channels.imap import ImapListener
from assistant.channels.oauth import OAuthError, TokenSource
from assistant.config import ImapSettings, load_settings
from assistant.store.db import open_store

captured = test_imap.captured  # the same log-capturing fixture

CLIENT_ID = "5f0c8a2e-dsr-test"
CLIENT_SECRET = "very-secret-client-secret~42"


class Provider:
    """A token endpoint (client credentials) and an RFC 7662 introspection endpoint on loopback.
    Tokens it issued are active until revoked."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.forms: list[dict[str, str]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path == "/tenant/oauth2/v2.0/token":
                    provider.forms.append(form)
                    if (form.get("grant_type") != "client_credentials"
                            or form.get("client_id") != CLIENT_ID
                            or form.get("client_secret") != CLIENT_SECRET):
                        self._answer(401, {"error": "invalid_client", "error_description":
                                           "AADSTS7000215: Invalid client secret provided."})
                        return
                    token = f"token-{len(provider.issued) + 1}"
                    provider.issued.append(token)
                    self._answer(200, {"token_type": "Bearer", "expires_in": 3599,
                                       "access_token": token})
                elif self.path == "/introspect":
                    token = form.get("token", "")
                    active = ((token in provider.issued or token.startswith("cmd-"))
                              and token not in provider.revoked)
                    self._answer(200, {"active": "true" if active else "false",
                                       "username": USER})
                else:
                    self._answer(404, {})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.token_url = self.url + "/tenant/oauth2/v2.0/token"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def dovecot(provider, tmp_path) -> Iterator[DovecotOAuth]:
    reason = dovecot_missing()
    if reason:
        pytest.skip(reason)
    srv = DovecotOAuth(tmp_path, provider.url + "/introspect")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        srv.cleanup()


@pytest.fixture
def engine(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'dsr.db'}")


def oauth_settings(srv, provider: Provider, **overrides) -> ImapSettings:
    values = dict(host=srv.host, port=srv.port, tls=False, username=srv.username,
                  auth="xoauth2", oauth2_token_url=provider.token_url,
                  oauth2_client_id=CLIENT_ID, oauth2_client_secret=CLIENT_SECRET,
                  folder="INBOX", archive_folder="Processed")
    values.update(overrides)
    return ImapSettings(**values)


def oauth_listener(settings: ImapSettings, engine) -> ImapListener:
    return ImapListener(settings, engine, backoff_initial=0.05, backoff_max=0.2,
                        lock_retry_seconds=0.1, timeout=10)


# ------------------------------------------------------------------ against a real server


def test_a_token_from_the_client_credentials_grant_opens_the_mailbox(dovecot, provider, engine):
    append(dovecot, mail(1), mail(2))
    lst = oauth_listener(oauth_settings(dovecot, provider), engine)
    assert lst.poll_once().stored == 2
    assert count(engine) == 2 and len(folder(dovecot, "Processed")) == 2
    form = provider.forms[0]
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "https://outlook.office365.com/.default"
    append(dovecot, mail(3))
    assert lst.poll_once().stored == 1
    assert provider.issued == ["token-1"], "a valid token is used again, not fetched per login"


def test_a_refused_token_is_replaced_by_a_new_one(dovecot, provider, engine, captured):
    lst = oauth_listener(oauth_settings(dovecot, provider), engine)
    assert lst.poll_once().stored == 0
    provider.revoked.add("token-1")  # revoked by an administrator, or expired early
    append(dovecot, mail(1))
    with Running(lst):
        wait_until(lambda: count(engine) == 1, "the mail stored after a new token")
    assert provider.issued == ["token-1", "token-2"]
    text = log_text(captured)
    assert "imap connection failed" in text
    assert "token-" not in text and CLIENT_SECRET not in text


def test_a_token_printed_by_a_command_opens_the_mailbox(dovecot, provider, engine):
    command = f"{sys.executable} -c \"print('cmd-abc123')\""
    settings = oauth_settings(dovecot, provider, oauth2_token_url=None, oauth2_client_id=None,
                              oauth2_client_secret=None, oauth2_token_command=command)
    append(dovecot, mail(1))
    assert oauth_listener(settings, engine).poll_once().stored == 1
    assert provider.forms == []


def test_a_wrong_client_secret_is_logged_with_the_providers_reason_and_retried(
        provider, engine, tmp_path, captured):
    """The provider's refusal names the fault; the secret never reaches the log. Any server
    will do: the token is refused before the login."""
    srv = Pymap(tmp_path)
    srv.start()
    try:
        settings = oauth_settings(srv, provider, oauth2_client_secret="wrong-secret-value")
        with Running(oauth_listener(settings, engine)):
            wait_until(lambda: sum("imap connection failed" in r.getMessage()
                                   for r in captured) >= 2, "two failed attempts")
    finally:
        srv.stop()
    text = log_text(captured)
    assert "401: invalid_client (AADSTS7000215: Invalid client secret provided.)" in text
    assert "wrong-secret-value" not in text and CLIENT_SECRET not in text


# ------------------------------------------------------------------ the token source alone


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_kept_until_a_minute_before_it_expires(provider):
    clock = Clock()
    settings = ImapSettings(host="h", username=USER, auth="xoauth2",
                            oauth2_token_url=provider.token_url, oauth2_client_id=CLIENT_ID,
                            oauth2_client_secret=CLIENT_SECRET)
    source = TokenSource(settings, clock=clock)
    assert source.token() == "token-1"
    clock.now += 3599 - 61
    assert source.token() == "token-1"
    clock.now += 2
    assert source.token() == "token-2"
    source.forget()
    assert source.token() == "token-3"


@pytest.mark.parametrize("command, message", [
    (f"{sys.executable} -c \"import sys; sys.exit('vault locked')\"", "exited with 1: vault locked"),
    (f"{sys.executable} -c \"pass\"", "printed no token"),
    ("/nonexistent/token-helper", "could not run: FileNotFoundError"),
])
def test_a_failing_token_command_says_why(command, message):
    settings = ImapSettings(host="h", username=USER, auth="xoauth2", oauth2_token_command=command)
    with pytest.raises(OAuthError, match=message):
        TokenSource(settings).token()


def test_an_unreachable_token_endpoint_says_so():
    settings = ImapSettings(host="h", username=USER, auth="xoauth2",
                            oauth2_token_url="http://127.0.0.1:9/token",
                            oauth2_client_id=CLIENT_ID, oauth2_client_secret=CLIENT_SECRET)
    with pytest.raises(OAuthError, match="could not be reached") as caught:
        TokenSource(settings, timeout=5).token()
    assert CLIENT_SECRET not in str(caught.value)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("table, error", [
    ('auth = "xoauth2"', "missing: oauth2_token_url, oauth2_client_id, oauth2_client_secret"),
    ('auth = "xoauth2"\noauth2_token_url = "http://login.example.com/t"\n'
     'oauth2_client_id = "a"\noauth2_client_secret = "b"', "must be an https:// address"),
    ('auth = "xoauth2"\noauth2_token_command = "x"\noauth2_token_url = "https://l.example/t"',
     "choose one"),
    ("", "password: required"),
    ('auth = "kerberos"\npassword = "x"', "auth"),
])
def test_an_incomplete_oauth_table_is_refused_at_start(tmp_path, table, error):
    config = tmp_path / "dsr.toml"
    config.write_text(f'[imap]\nhost = "imap.example.no"\nusername = "p@example.no"\n{table}\n')
    with pytest.raises(Exception, match=error):
        load_settings(config)


def test_a_microsoft_365_table_is_accepted(tmp_path):
    config = tmp_path / "dsr.toml"
    config.write_text(
        '[imap]\nhost = "outlook.office365.com"\nusername = "personvern@example.no"\n'
        'auth = "xoauth2"\n'
        'oauth2_token_url = "https://login.microsoftonline.com/TENANT-ID/oauth2/v2.0/token"\n'
        'oauth2_client_id = "app-id"\noauth2_client_secret = "s"\n')
    imap = load_settings(config).imap
    assert imap.auth == "xoauth2" and imap.password is None
    assert imap.oauth2_scope == "https://outlook.office365.com/.default"

"""OAuth 2.0 access tokens for reading a mailbox with XOAUTH2 (Microsoft 365, Google Workspace).

Exchange Online no longer accepts a password over IMAP: a mailbox is opened with an access token
(SASL XOAUTH2). A token can come from two places, chosen in ``[imap]``:

* ``oauth2_token_url`` with ``oauth2_client_id`` and ``oauth2_client_secret``: the OAuth
  *client credentials* grant (RFC 6749 section 4.4), which is what an unattended service
  registered in Microsoft Entra ID uses (``https://login.microsoftonline.com/TENANT/oauth2/v2.0/
  token`` with scope ``https://outlook.office365.com/.default``). The token is kept until a
  minute before it expires, and fetched again after the server refuses it.
* ``oauth2_token_command``: a program that prints a fresh access token on stdout (the
  ``PassCmd`` convention of isync and similar tools), for any provider or flow dsr does not do
  itself (a refresh token kept by a helper, a secrets manager). It runs on every connection.

Neither the secret nor the token is ever logged; failures name the HTTP status, the provider's
error code and at most a short description.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

#: A token is used until this many seconds before the provider says it expires.
EXPIRY_MARGIN_SECONDS = 60.0
#: When the provider gives no lifetime, assume the usual hour.
DEFAULT_LIFETIME_SECONDS = 3600.0
TIMEOUT_SECONDS = 30.0
_MAX_ANSWER_BYTES = 64 * 1024


class OAuthError(Exception):
    """No token could be had: the message says why, without secrets."""


def _short(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class TokenSource:
    """Hands out a current access token for the ``[imap]`` settings given; thread-safe."""

    def __init__(self, imap: Any, *, timeout: float = TIMEOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.imap = imap
        self.timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        """A token to log in with: the cached one while it is valid, else a new one."""
        with self._lock:
            if self.imap.oauth2_token_command:
                return self._from_command(self.imap.oauth2_token_command)
            if self._token is None or self._clock() >= self._valid_until:
                self._token, lifetime = self._client_credentials()
                self._valid_until = self._clock() + max(lifetime - EXPIRY_MARGIN_SECONDS, 0.0)
            return self._token

    def forget(self) -> None:
        """The server refused the token (revoked, or a clock skew): fetch a new one next time."""
        with self._lock:
            self._token = None
            self._valid_until = 0.0

    # ------------------------------------------------------------------ the two sources

    def _client_credentials(self) -> tuple[str, float]:
        imap = self.imap
        form = {"grant_type": "client_credentials", "client_id": imap.oauth2_client_id,
                "client_secret": imap.oauth2_client_secret}
        if imap.oauth2_scope:
            form["scope"] = imap.oauth2_scope
        request = urllib.request.Request(
            imap.oauth2_token_url, data=urllib.parse.urlencode(form).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                body = answer.read(_MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            raise OAuthError(f"the token endpoint answered {exc.code}{_error_of(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OAuthError(f"the token endpoint could not be reached: {_short(reason)}") from None
        try:
            data = json.loads(body)
            token = data["access_token"]
        except (ValueError, KeyError, TypeError):
            raise OAuthError("the token endpoint's answer holds no access_token") from None
        if not isinstance(token, str) or not token:
            raise OAuthError("the token endpoint's answer holds no access_token")
        try:
            lifetime = float(data.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        return token, lifetime

    def _from_command(self, command: str) -> str:
        try:
            done = subprocess.run(shlex.split(command), capture_output=True, text=True,
                                  timeout=self.timeout, stdin=subprocess.DEVNULL, check=False)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise OAuthError(f"oauth2_token_command could not run: {type(exc).__name__}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [""])[-1]
            raise OAuthError(f"oauth2_token_command exited with {done.returncode}: {_short(last)}")
        lines = done.stdout.strip().splitlines()
        if not lines or not lines[0].strip():
            raise OAuthError("oauth2_token_command printed no token")
        return lines[0].strip()


def _error_of(exc: urllib.error.HTTPError) -> str:
    """The provider's `error` (and a short `error_description`) from a refusal, if it gave one."""
    try:
        data = json.loads(exc.read(_MAX_ANSWER_BYTES))
    except (ValueError, OSError):
        return ""
    if not isinstance(data, dict) or "error" not in data:
        return ""
    described = data.get("error_description")
    return f": {_short(data['error'], 80)}" + (f" ({_short(described, 160)})" if described else "")

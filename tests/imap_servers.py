"""Real IMAP servers on loopback for the tests: pymap (pure Python, always) and Dovecot (when the
Debian package `dovecot-imapd` is installed). Each runs as a subprocess on a free port and can be
stopped, killed and started again on the same port."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

USER = "personvern@example.no"
PASSWORD = "app-password-1"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.settimeout(5)
                if sock.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text()[-2000:]}")


class Server:
    name = "?"
    host = "127.0.0.1"
    username = USER
    password = PASSWORD
    renumbers_on_restart = False  # a restart gives new UIDVALIDITY and an empty mailbox

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = self.workdir / f"{self.name}.log"
        handle = log.open("ab")
        self.process = subprocess.Popen(self.command(), stdout=handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        handle.close()
        _wait_for_port(self.port, self.process, log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        # Until the port is free again, a restart on it would fail.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.05)
            except OSError:
                return

    def kill(self) -> None:
        """The connection drops without a goodbye."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.normalise_times = False
        client.login(self.username, self.password)
        return client


class Pymap(Server):
    name = "pymap"
    renumbers_on_restart = True

    def command(self) -> list[str]:
        pymap = Path(sys.executable).with_name("pymap")
        program = [str(pymap)] if pymap.exists() else [shutil.which("pymap") or "pymap"]
        return program + ["--host", "127.0.0.1", "--port", str(self.port), "--no-tls", "dict",
                          "--demo-user", self.username, "--demo-password", self.password]


DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = dsr-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
default_internal_user = {internal}
default_login_user = {login}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None)


def dovecot_missing() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if dovecot_binary() is None:
        return "dovecot is not installed (apt-get install dovecot-imapd): Dovecot tests skipped"
    if os.geteuid() == 0:
        for user in ("dovecot", "dovenull", "nobody"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                return f"system user {user!r} is missing: Dovecot tests skipped"
    return None


class Dovecot(Server):
    """Dovecot from a config file in a private folder; it keeps its mail across restarts."""

    name = "dovecot"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        # Mail processes run as an unprivileged user, who must reach the maildir: pytest's tmp
        # folders are private to root, so the server gets a world-traversable folder of its own.
        self.root = Path(tempfile.mkdtemp(prefix="dsr-dovecot-"))
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            internal, login = "dovecot", "dovenull"
        else:
            mail_user = pwd.getpwuid(os.geteuid())
            internal = login = mail_user.pw_name
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(self.root / "mail", mail_user.pw_uid, mail_user.pw_gid)
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(DOVECOT_CONF.format(
            root=self.root, port=self.port, password=self.password, uid=mail_user.pw_uid,
            gid=mail_user.pw_gid, internal=internal, login=login))

    def command(self) -> list[str]:
        return [dovecot_binary() or "dovecot", "-F", "-c", str(self.conf)]

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


DOVECOT_OAUTH_PASSDB = """\
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
"""

DOVECOT_OAUTH_CONF = """\
introspection_url = {introspection_url}
introspection_mode = post
username_attribute = username
active_attribute = active
active_value = true
"""


class DovecotOAuth(Dovecot):
    """Dovecot that also takes SASL XOAUTH2, checking each token at `introspection_url` (an
    RFC 7662 endpoint the test runs); the password still works for the test's own client."""

    name = "dovecot-oauth"

    def __init__(self, workdir: Path, introspection_url: str) -> None:
        super().__init__(workdir)
        conf = self.conf.read_text().replace("auth_mechanisms = plain login\n", "")
        self.conf.write_text(DOVECOT_OAUTH_PASSDB.format(root=self.root) + conf)
        (self.root / "dovecot-oauth2.conf.ext").write_text(
            DOVECOT_OAUTH_CONF.format(introspection_url=introspection_url))


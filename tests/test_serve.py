"""`dsr serve` as an operator runs it: a subprocess, a burst of mail, a SIGKILL in the middle.

Every message the client saw accepted (250) must be stored exactly once and processed after the
restart, and so must the client's retries of those it did not see accepted. SIGTERM then stops
the service cleanly (exit 0). Counts only; no timing is asserted (the waits are upper bounds so a
broken build fails instead of hanging)."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from mailservers import free_port
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
BURST = 500
KILL_AFTER = 150
WAIT_SECONDS = 180


def _config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "dsr.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "dsr.db"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n'
        f'[outbound]\nmaildir = "{tmp_path / "outbox"}"\n'
        '[log]\nlevel = "INFO"\n', encoding="utf-8")
    return config


def _start(config: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    with log.open("ab") as err:
        process = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--config", str(config)],
                                   cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-2000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("dsr serve did not start listening")


def _message(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"person{n}@example.no"
    msg["To"] = "kundesenter@branninfo.no"
    msg["Subject"] = "Innsyn"
    msg["Message-ID"] = f"<burst-{n}@example.no>"
    msg.set_content(f"Hei, jeg ber om innsyn i opplysningene dere har om meg. Kundenummer {n}.")
    return msg.as_bytes(policy=SMTP)


class Client:
    """Sends each message until it sees 250; remembers which were accepted at the first try."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: set[int] = set()
        self.refused: set[int] = set()
        self.lock = threading.Lock()
        self.connection: smtplib.SMTP | None = None

    def _send(self, n: int) -> bool:
        try:
            if self.connection is None:
                self.connection = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            self.connection.sendmail(f"person{n}@example.no", ["kundesenter@branninfo.no"], _message(n))
        except (smtplib.SMTPException, OSError):
            try:
                if self.connection is not None:
                    self.connection.close()
            except Exception:  # noqa: BLE001
                pass
            self.connection = None
            return False
        with self.lock:
            self.accepted.add(n)
        return True

    def burst(self, numbers: range) -> None:
        for n in numbers:
            if not self._send(n):
                with self.lock:
                    self.refused.add(n)

    def retry(self, numbers: set[int]) -> None:
        for n in sorted(numbers):
            deadline = time.monotonic() + 60
            while not self._send(n):
                assert time.monotonic() < deadline, "the restarted server does not accept mail"
                time.sleep(0.05)
        if self.connection is not None:
            self.connection.quit()


def _count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


@pytest.mark.timeout(600)
def test_a_burst_survives_a_sigkill_and_every_accepted_message_is_stored_once_and_processed(tmp_path):
    port = free_port()
    config, log = _config(tmp_path, port), tmp_path / "serve.log"
    server = _start(config, port, log)
    client = Client(port)
    sending = threading.Thread(target=client.burst, args=(range(BURST),))
    sending.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while len(client.accepted) < KILL_AFTER and sending.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    sending.join()
    accepted_before_kill = set(client.accepted)
    assert KILL_AFTER <= len(accepted_before_kill) < BURST and client.refused

    server = _start(config, port, log)
    try:
        client.retry(client.refused)
        assert client.accepted == set(range(BURST))
        engine = create_engine(f"sqlite:///{tmp_path / 'dsr.db'}")
        deadline = time.monotonic() + WAIT_SECONDS
        while _count(engine, "SELECT count(*) FROM messages WHERE direction = 'in' "
                             "AND status = 'processed'") < BURST:
            assert time.monotonic() < deadline, "the worker did not process every message"
            time.sleep(0.2)
        while _count(engine, "SELECT count(*) FROM outbox WHERE state = 'sent'") < BURST:
            assert time.monotonic() < deadline, "the sender did not deliver every acknowledgement"
            time.sleep(0.2)
        with engine.connect() as conn:
            per_id = dict(conn.execute(text(
                "SELECT message_id, count(*) FROM messages WHERE direction = 'in' GROUP BY message_id")).all())
            assert per_id == {f"<burst-{n}@example.no>": 1 for n in range(BURST)}
            assert _count(engine, "SELECT count(*) FROM cases") == BURST
            assert _count(engine, "SELECT count(DISTINCT case_id) FROM messages WHERE direction = 'in'") == BURST
            assert _count(engine, "SELECT count(*) FROM outbox") == BURST  # one acknowledgement each
        engine.dispose()
        import mailbox

        box = mailbox.Maildir(str(tmp_path / "outbox"), create=False)
        delivered = {box.get_message(key)["Message-ID"] for key in box.keys()}
        assert len(delivered) == BURST
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=120)
    assert code == 0, log.read_text(errors="replace")[-2000:]
    lines = log.read_text(errors="replace")
    assert "stage started" in lines and "stage=smtp" in lines and "stage=intake" in lines
    assert "example.no" not in lines  # addresses never reach the log
    # The backlog was prepared ahead in a second process, which never failed (python -m
    # assistant: the spawned process imports the main module again without running the CLI).
    assert "preparing ahead in a second process" in lines
    assert "preparing ahead stopped" not in lines

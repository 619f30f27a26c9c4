"""The Slack stage of `dsr serve`: the app in HTTP or Socket Mode, and the card syncer.

HTTP mode (no `app_token`): a threaded HTTP server on 127.0.0.1:`http_port` (0 picks a free
port; `port` tells which) answers POST /slack/events; Bolt checks the signature and refuses an
unsigned or stale request with 401. Socket Mode (`app_token` set): slack_sdk's socket client
connects out to Slack; no port is opened. Beside it a loop queues card posts and updates
(cards.sync_cards) so a case that changed by email shows on its card too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from ...config import Settings
from ...logs import get_logger
from ...store import gate as write_gate
from ...store.db import session_scope
from . import cards
from .app import Desk

log = get_logger("slack")

PATH = "/slack/events"
MAX_BODY = 1_000_000


def _handler(desk: Desk) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: str = "", headers: dict[str, Any] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            for name, values in (headers or {}).items():
                if name.lower() == "content-length":
                    continue
                for value in values if isinstance(values, list | tuple) else [values]:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path != PATH:
                self._answer(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413)
                return
            body = self.rfile.read(length).decode("utf-8", "replace")
            headers = {k.lower(): [v] for k, v in self.headers.items()}
            response = desk.app.dispatch(BoltRequest(body=body, query=url.query, headers=headers))
            self._answer(response.status, response.body, response.headers)

        def log_message(self, fmt: str, *args: Any) -> None:  # the service log says enough
            pass

    return Handler


class SlackStage:
    """Start, run and stop the desk the way the other stages are."""

    def __init__(self, settings: Settings, engine: Engine, *, client: WebClient | None = None,
                 on_change: Callable[[], None] | None = None, port: int | None = None,
                 sync_seconds: float = 5.0, gate: write_gate.WriteGate | None = None) -> None:
        self.settings, self.engine = settings, engine
        if not settings.slack.app_token and not settings.slack.signing_secret:
            raise ValueError("slack: HTTP mode needs slack.signing_secret (or set slack.app_token "
                             "for Socket Mode)")
        self.gate = gate
        self.desk = Desk(settings, engine, client=client, on_change=on_change, gate=gate)
        self.sync_seconds = sync_seconds
        self.on_change = on_change or (lambda: None)
        self.socket_mode = bool(settings.slack.app_token)
        self._port = settings.slack.http_port if port is None else port
        self.server: ThreadingHTTPServer | None = None
        self.socket: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return self.server.server_address[1] if self.server is not None else None

    def start(self) -> None:
        if self.socket_mode:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            self.socket = SocketModeHandler(self.desk.app, self.settings.slack.app_token)
            self.socket.connect()
            log.info("slack connected", extra={"mode": "socket"})
            return
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self.desk))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="dsr-slack-http",
                                        daemon=True)
        self._thread.start()
        log.info("slack listening", extra={"mode": "http", "port": self.port, "path": PATH})

    def sync_once(self) -> int:
        with write_gate.background(self.gate), session_scope(self.engine) as session:
            queued = cards.sync_cards(session, self.settings)
        if queued:
            self.on_change()
        return queued

    def run_sync(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sync_once()
            except OperationalError:
                log.warning("database unavailable; retrying")
            except Exception as exc:  # noqa: BLE001
                log.error("card sync failed", extra={"error": type(exc).__name__})
            stop.wait(self.sync_seconds)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.socket is not None:
            self.socket.close()
            self.socket = None

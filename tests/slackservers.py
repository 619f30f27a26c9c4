"""A local server answering the Slack Web API (the pattern of bolt-python's
tests/mock_web_api_server), and signed requests to the app under test. Nothing here reaches
beyond 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode
from urllib.request import Request, urlopen

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


class SlackApi:
    """Records every call; answers like Slack. `fail(method, status, headers)` makes the next
    call of that method fail once with that HTTP status (429 with Retry-After, 500 …)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, list[tuple[int, dict[str, str], dict[str, Any]]]] = {}
        self.groups: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self._ts = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    args = json.loads(raw or "{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw).items()}
                method = self.path.rsplit("/", 1)[-1]
                status, headers, answer = api.answer(method, args)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def start(self) -> SlackApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, status: int, headers: dict[str, str] | None = None,
             body: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.failures.setdefault(method, []).append(
                (status, headers or {}, body or {"ok": False, "error": "ratelimited"}))

    def answer(self, method: str, args: dict[str, Any]) -> tuple[int, dict[str, str], dict]:
        with self.lock:
            queued = self.failures.get(method)
            if queued:
                return queued.pop(0)
            self.calls.append((method, args))
            if method == "auth.test":
                return 200, {}, {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1",
                                 "user": "dsr", "team": "Test", "url": "https://test.slack.com/"}
            if method == "chat.postMessage":
                self._ts += 1
                return 200, {}, {"ok": True, "channel": args.get("channel"),
                                 "ts": f"1700000000.{self._ts:06d}"}
            if method == "chat.update":
                return 200, {}, {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
            if method == "usergroups.users.list":
                return 200, {}, {"ok": True, "users": self.groups.get(args.get("usergroup"), [])}
            if method in ("views.open", "views.publish"):
                return 200, {}, {"ok": True, "view": {"id": "V1"}}
            return 200, {}, {"ok": True}

    def named(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [args for name, args in self.calls if name == method]


def signed_headers(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                   content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}"}


def post(port: int, body: str, headers: dict[str, str]) -> tuple[int, str]:
    request = Request(f"http://127.0.0.1:{port}/slack/events", data=body.encode(), method="POST",
                      headers=headers)
    try:
        with urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except HTTPError as exc:
        return exc.code, exc.read().decode()


def interaction(port: int, payload: dict[str, Any], **sign: Any) -> tuple[int, str]:
    body = urlencode({"payload": json.dumps(payload)})
    return post(port, body, signed_headers(body, **sign))


def click(port: int, user: str, action_id: str, value: str) -> tuple[int, str]:
    return interaction(port, {
        "type": "block_actions", "user": {"id": user, "username": user, "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy", "trigger_id": "111.222.abc",
        "team": {"id": "T1", "domain": "test"}, "channel": {"id": "CREVIEW", "name": "review"},
        "container": {"type": "message", "message_ts": "1700000000.000001"},
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button",
                     "action_ts": "1700000001.000001"}]})


def submit(port: int, user: str, callback_id: str, ref: str,
           values: dict[str, dict[str, Any]]) -> tuple[int, str]:
    return interaction(port, {
        "type": "view_submission", "user": {"id": user, "username": user, "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy", "trigger_id": "111.222.abc",
        "team": {"id": "T1", "domain": "test"},
        "view": {"id": "V1", "type": "modal", "callback_id": callback_id, "private_metadata": ref,
                 "hash": "h", "state": {"values": {block: {"value": element}
                                                   for block, element in values.items()}}}})


def command(port: int, user: str, text: str, response_url: str) -> tuple[int, str]:
    body = urlencode({"token": "legacy", "team_id": "T1", "team_domain": "test", "user_id": user,
                      "user_name": user, "command": "/dsr", "text": text,
                      "trigger_id": "111.222.abc", "response_url": response_url,
                      "channel_id": "CREVIEW", "api_app_id": "A1"})
    return post(port, body, signed_headers(body))


def wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    """Poll until predicate() is truthy (the listener runs after the ack, on its own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the listener")
        time.sleep(0.05)

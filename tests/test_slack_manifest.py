"""The Slack app manifest parses, and asks for exactly the scopes the code needs: every Web API
method the code calls, every event it listens to and the slash command, each mapped to its scope
(Slack's method and event reference pages). A scope added or dropped on one side only fails."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SLACK = ROOT / "assistant" / "channels" / "slack"
MANIFEST = SLACK / "manifest.yaml"

# Web API method -> the bot scope it needs (None: no scope).
METHOD_SCOPES = {
    "chat.postMessage": "chat:write", "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write", "views.open": None, "views.publish": None,
    "usergroups.users.list": "usergroups:read", "auth.test": None,
}
# Event listened to -> (bot events to subscribe, scopes they need).
EVENT_SCOPES = {
    "app_home_opened": (["app_home_opened"], []),
    "message": (["message.channels", "message.groups", "message.im"],
                ["channels:history", "groups:history", "im:history"]),
}


def methods_called() -> set[str]:
    found: set[str] = set()
    sources = [p.read_text(encoding="utf-8") for p in SLACK.glob("*.py")]
    for source in sources:
        for name in re.findall(r"client\.([a-z]+_[A-Za-z_]+)\(", source):
            found.add(name.replace("_", "."))
    outbox = (ROOT / "assistant" / "outbox.py").read_text(encoding="utf-8")
    found.update(re.search(r"SLACK_METHODS = \(([^)]*)\)", outbox).group(1).replace('"', "")
                 .replace(" ", "").split(","))
    found.add("auth.test")  # Bolt checks the token at start-up
    return {m for m in found if m}


def events_heard() -> set[str]:
    source = (SLACK / "app.py").read_text(encoding="utf-8")
    return set(re.findall(r'@app\.event\("([a-z_]+)"\)', source))


def test_the_manifest_names_exactly_the_scopes_the_code_uses():
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    called = methods_called()
    assert called <= set(METHOD_SCOPES), f"map these methods to scopes: {called - set(METHOD_SCOPES)}"
    heard = events_heard()
    assert heard <= set(EVENT_SCOPES), f"map these events: {heard - set(EVENT_SCOPES)}"
    needed = {METHOD_SCOPES[m] for m in called} - {None}
    needed |= {s for e in heard for s in EVENT_SCOPES[e][1]}
    source = (SLACK / "app.py").read_text(encoding="utf-8")
    commands = set(re.findall(r'@app\.command\("(/[a-z]+)"\)', source))
    if commands:
        needed.add("commands")
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        b for e in heard for b in EVENT_SCOPES[e][0]}
    assert {c["command"] for c in manifest["features"]["slash_commands"]} == commands == {"/dsr"}


def test_the_manifest_points_everything_at_bolts_path_and_has_the_home_tab():
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    for url in (settings["interactivity"]["request_url"],
                settings["event_subscriptions"]["request_url"],
                manifest["features"]["slash_commands"][0]["url"]):
        assert url.endswith("/slack/events")
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True

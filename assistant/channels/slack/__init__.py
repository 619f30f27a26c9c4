"""Slack: the review desk (cards, buttons, modals, `/dsr`, App Home) and chat intake.

`cards` turns a case into its review card and queues card posts and updates as outbox rows (kind
``slack``); `app` is the Bolt app whose listeners act through `workflow`; `stage` runs it in HTTP
mode (signing secret, `http_port`, path /slack/events) or Socket Mode (`app_token`). Nothing here
imports understand, cases or drafting (tests/test_import_rules.py).
"""

"""The edges where messages arrive: SMTP, IMAP, files (`dsr import`) and Slack.

A channel only converts what arrived into a stored row and commits it before it acknowledges
(SMTP 250, IMAP move or \\Seen, Slack ack). It never understands, decides or drafts: the intake
worker does that from the stored row, so a crash loses nothing and a retry duplicates nothing.
"""

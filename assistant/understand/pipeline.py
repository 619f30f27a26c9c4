"""Understanding in one call: the text a person wrote -> intents, language, evidence.

Callers (the CLI, the worker, Slack intake) use this, so quote stripping and classification
are applied the same way whatever the channel.
"""

from __future__ import annotations

from .intents import Classification, classify
from .mailtext import strip_quotes_and_signature

# What a person writes to a privacy address fits in far less; the rest is quoted mail,
# pasted logs or attachments turned to text. Capping first keeps a 5 MB mail cheap.
MAX_SCORED_CHARS = 20_000


def understand_text(body: str, subject: str = "", default_language: str = "nb") -> Classification:
    """Classify what the person wrote now, not what they quoted from earlier mail."""
    new_text = strip_quotes_and_signature((body or "")[:MAX_SCORED_CHARS])
    return classify(new_text, subject=(subject or "")[:1000],
                    default_language=default_language)

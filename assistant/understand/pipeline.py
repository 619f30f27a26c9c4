"""Understanding in one call: the text a person wrote -> intents, language, evidence.

Callers (the CLI, the worker, Slack intake) use this, so quote stripping and classification
are applied the same way whatever the channel.
"""

from __future__ import annotations

from .intents import Classification, classify
from .mailtext import strip_quotes_and_signature


def understand_text(body: str, subject: str = "", default_language: str = "nb") -> Classification:
    """Classify what the person wrote now, not what they quoted from earlier mail."""
    return classify(strip_quotes_and_signature(body or ""), subject=subject or "",
                    default_language=default_language)

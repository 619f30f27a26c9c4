"""Understanding in one call: the text a person wrote -> intents, language, evidence.

Callers (the CLI, the worker, Slack intake) use this, so quote stripping and classification
are applied the same way whatever the channel. The lexicons decide first; the learned model
(learned.py) may add an intent they missed when it is confident, and its evidence says so.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .intents import SURE_TO_NAME, UNDETERMINED, Classification, IntentScore, load_lexicon, read
from .language import TOKEN_RE, folded_tokens
from .learned import LearnedModel, load_model
from .reply_parser import strip_quotes_and_signature

# What a person writes to a privacy address fits in far less; the rest is quoted mail,
# pasted logs or attachments turned to text. Capping first keeps a 5 MB mail cheap.
MAX_SCORED_CHARS = 20_000
# The learned model adds an intent at this probability. Leave-one-set-out on E, F, G
# (bench/leave_one_out.py --adds-at) 0.5, 0.6 and 0.7 gave the same mean core macro-F1 within
# 0.002; 0.6 keeps request recall above 0.7's (on set D, measured blind, it gave 0.926 lexicon
# alone, 0.930 with the model).
LEARNED_ADDS_AT = 0.6
# The model does not add one of these intents over a firm look-alike of it the lexicons found
# (Classification.lookalikes: "brukerkoden" for erasure, "kopi av ordrebekreftelsen" for access).
GUARDED = frozenset({"access", "erasure", "portability", "opt_out"})
# Nor these over a firm look-alike of every intent ([any]: "ved et uhell", "fiktiv testkunde";
# question since L and M: "takk for svaret" about how long recordings are kept).
GUARDED_BY_ANY = frozenset({"erasure", "question"})
# Below that but above this, a message the lexicons found nothing in goes to a person.
LEARNED_UNCLEAR_AT = 0.3
# ... and this much for an intent the lexicons found a firm look-alike of (L and M, 2026-12-01)
LEARNED_UNCLEAR_OVER_LOOKALIKE = 0.45


# With an arbiter: a message it finds no intent in goes to a person when it gives one at least
# this probability, or when the lexicons chose an intent it set aside (bench/train_learned.py
# prints request recall with triage and the non-requests it sends, leave-one-set-out).
ARBITER_UNCLEAR_AT = 0.2
# The arbiter sets aside what the lexicons read only in these languages, and only when the
# language profiles are this sure of it: the model learned from mail mostly written in them, and
# in the others (or a message too short to tell) it knows too few words to overrule a lexicon.
# Leave-one-set-out over P, Q, T, U, mean core macro-F1: everywhere 0.904, only in these 0.911,
# and sure of it 0.910 with fewer of our own category examples missed (bench/README.md).
SETS_ASIDE_IN = frozenset({"nb", "nn", "da", "sv", "en"})
SURE_TO_SET_ASIDE = 0.3
# ... and at this probability for a message in another language, or one too short to tell
# (where the model knows few words, so its probabilities run low): request recall with triage
# 0.983 -> 0.988 over the arbiter sets for ten more non-requests in a person's queue of 900.
ELSEWHERE_UNCLEAR_AT = 0.1
# In those other languages the arbiter still adds what the lexicons missed, more cautiously:
# never adding there cost 0.01 of mean core macro-F1 leave-one-set-out; 0.4-0.6 gave the same.
ADDS_ELSEWHERE_AT = 0.6
_P_FLOOR = 1e-4  # the model's probabilities are taken within [1e-4, 1 - 1e-4] for log-odds
_LOG_ODDS_LIMIT = math.log((1 - _P_FLOOR) / _P_FLOOR)


# A message of at least this many words in lower case (names, brands and product models are
# left out) of which fewer than this share were ever seen in the labelled mail the model learned
# from is in a language the product does not read (Vietnamese, Hungarian, Finnish, Estonian,
# Swahili...). Measured with a vocabulary built without each set: mail in nb, nn, da, sv and en
# never fell below 0.50 (6,600 messages), those languages 0-0.5 (8 of 12 below 0.4).
UNKNOWN_LANGUAGE_WORDS = 5
KNOWN_WORDS_SHARE = 0.4


def understand_text(body: str, subject: str = "", default_language: str = "nb", *,
                    model: LearnedModel | None = None) -> Classification:
    """Classify what the person wrote now, not what they quoted from earlier mail.
    `model`: a learned model other than the one in use (bench/leave_one_out.py)."""
    new_text = strip_quotes_and_signature((body or "")[:MAX_SCORED_CHARS])
    subject = (subject or "")[:1000]
    result, words = read(new_text, subject=subject, default_language=default_language)
    return second_opinion(result, subject, new_text, words, model=model)


def unrecognised(result: Classification, text: str, model: LearnedModel,
                 languages: frozenset[str]) -> Classification:
    """A message no intent was found in, written in a language no lexicon reads and the
    profiles could not name with confidence, is not "certainly no request": we cannot read it.
    It goes to a person with that reason (it says more than a weak guess of the model's, which
    read words it does not know), and its language is undetermined (so its receipt and reply
    are in English)."""
    if result.intents or result.not_request or result.triage.startswith("written in"):
        return result  # found something, certainly nothing, or its script is named already
    if result.language in languages and result.language_confidence >= SURE_TO_NAME:
        return result
    sample = folded_tokens(" ".join(
        word for word in TOKEN_RE.findall(text[:4000])
        if len(word) > 1 and word[0].islower() and word.isalpha()))[:200]
    if len(sample) < UNKNOWN_LANGUAGE_WORDS:
        return result
    known = model.known_words(sample)
    if known >= KNOWN_WORDS_SHARE * len(sample):
        return result
    named = result.language_confidence >= SURE_TO_NAME
    return replace(result, unclear=True, language=result.language if named else UNDETERMINED,
                   triage=(f"written in a language the product does not read "
                           f"({known} of {len(sample)} words known)"))


def second_opinion(result: Classification, subject: str, text: str,
                   words: list[str] | None = None, *,
                   model: LearnedModel | None = None) -> Classification:
    """Let the learned model add what the lexicons missed; never take anything away.
    `words`: the folded words of text, if the caller has them (intents.read)."""
    model = model or load_model()
    if model is None or result.not_request:
        return result  # an auto-reply, a newsletter, phishing: nothing for the model to add
    if model.arbiter is not None:
        logits = model.log_odds(subject, text, words)
        decided = arbitrate(result, logits, model, subject, text)
        if decided.intents:
            return decided
        return unrecognised(decided, f"{subject}\n\n{text}", model, load_lexicon().languages)
    probabilities = model.probabilities(subject, text, words)
    confident = [intent for intent, p in probabilities.items()
                 if p >= LEARNED_ADDS_AT and intent not in result.intents]
    # A firm look-alike the lexicons found for a core intent ("brukerkoden" for erasure, "kopi av
    # ordrebekreftelsen" for access, "melde meg av kurset" for opt-out) keeps its say: the model
    # does not add that intent over it, and the message goes to a person instead when it has no
    # intent. Erasure, which cannot be undone, is also kept back by a firm look-alike of every
    # intent ([any]). Measured leave-one-set-out on E, F, G (bench/README.md).
    firm = result.lookalikes
    added = [intent for intent in confident
             if not (intent in GUARDED and intent in firm)
             and not (intent in GUARDED_BY_ANY and "any" in firm)]
    if not added:
        # A weak learned guess at an intent the lexicons firmly read as a look-alike ("slett
        # den gamle fakturaen") needs more to send the message to a person than a guess the
        # lexicons said nothing against.
        guess = any(p >= (LEARNED_UNCLEAR_OVER_LOOKALIKE if intent in firm else LEARNED_UNCLEAR_AT)
                    for intent, p in probabilities.items())
        if not result.intents and (confident or guess):
            return replace(result, unclear=True)
        return result
    by_intent = {s.intent: s for s in result.scores}
    for intent in added:
        learned = tuple(f"learned: {w}" for w in model.evidence(subject, text, intent))
        old = by_intent.get(intent)
        by_intent[intent] = IntentScore(
            intent, max(probabilities[intent], old.confidence if old else 0.0),
            (old.evidence if old else ()) + learned,
        )
    intents = tuple(result.intents) + tuple(
        sorted(added, key=lambda i: by_intent[i].confidence, reverse=True))
    scores = tuple(sorted(by_intent.values(), key=lambda s: s.confidence, reverse=True))
    return replace(result, intents=intents, scores=scores, unclear=False)


def guarded(result: Classification, intent: str) -> bool:
    """A firm look-alike the lexicons found speaks against adding `intent` (see GUARDED)."""
    firm = result.lookalikes
    return (intent in GUARDED and intent in firm) or (intent in GUARDED_BY_ANY and "any" in firm)


def arbiter_inputs(result: Classification, intent: str, probability: float) -> list[float]:
    """learned.ARBITER_INPUTS for one intent: what the lexicons and the model each said.
    Training builds these; _arbiter_probabilities sums the same in line."""
    lexicon = next((score.confidence for score in result.scores if score.intent == intent), 0.0)
    p = min(max(probability, _P_FLOOR), 1 - _P_FLOOR)
    return [1.0, lexicon, float(intent in result.intents), float(intent in result.lookalikes),
            float("any" in result.lookalikes), math.log(p / (1 - p)), float(result.not_request)]


def _arbiter_probabilities(result: Classification, log_odds: list[float],
                           model: LearnedModel) -> dict[str, float]:
    """Per intent, the arbiter's probability: model.arbiter_rows times arbiter_inputs(result,
    intent, p) for the model's log-odds (in model.intents' order), summed in line: every
    message asks, for eight intents (tests/test_pipeline.py keeps the two in step)."""
    confidence = {score.intent: score.confidence for score in result.scores}
    chosen, firm = result.intents, result.lookalikes
    any_firm = "any" in firm
    decided: dict[str, float] = {}
    for intent, row, x in zip(model.intents, model.arbiter_rows, log_odds):
        if x < -_LOG_ODDS_LIMIT:
            x = -_LOG_ODDS_LIMIT
        elif x > _LOG_ODDS_LIMIT:
            x = _LOG_ODDS_LIMIT
        z = row[0] + row[5] * x
        if intent in confidence:
            z += row[1] * confidence[intent]
            if intent in chosen:
                z += row[2]
        if firm:
            z += (row[3] if intent in firm else 0.0) + (row[4] if any_firm else 0.0)
        if result.not_request:
            z += row[6]
        decided[intent] = 1.0 / (1.0 + math.exp(-z)) if z > -60.0 else 0.0
    return decided


def arbitrate(result: Classification, log_odds: list[float], model: LearnedModel,
              subject: str, text: str) -> Classification:
    """Let the arbiter weigh the lexicons' reading against the model's (its log-odds per
    intent), intent by intent.

    The lexicons are precise on the phrasings they know and blind to the rest; the model reads
    everything but vaguely. The arbiter, learned on labelled mail the lexicons were never tuned
    on, can add what the lexicons missed and set aside what they read wrongly ("slett søknaden
    min hvis jeg ikke får jobben"). Nothing is lost by setting aside: a message left with no
    intent goes to a person when either reader saw a request in it. It does not add an intent
    over a firm look-alike of it (guarded), and it does not set aside what a phrase of the
    operator's own lexicon found, nor anything in a language outside SETS_ASIDE_IN. Where it
    agrees with the lexicons, their reading (and its confidences) stands as it is."""
    decided = _arbiter_probabilities(result, log_odds, model)
    sets_aside = (result.language in SETS_ASIDE_IN
                  and result.language_confidence >= SURE_TO_SET_ASIDE)
    final = result.operator_intents | (frozenset() if sets_aside else frozenset(result.intents))
    at = model.chosen_at
    chosen = sorted((i for i, q in decided.items()
                     if (q >= (at[i] if i in result.intents or sets_aside
                               else max(at[i], ADDS_ELSEWHERE_AT))
                         and (i in result.intents or not guarded(result, i)))
                     or i in final),
                    key=lambda i: decided[i], reverse=True)
    if len(chosen) == len(result.intents) and set(chosen) == set(result.intents):
        if chosen or result.unclear or max(decided.values()) < (
                ARBITER_UNCLEAR_AT if sets_aside else ELSEWHERE_UNCLEAR_AT):
            return result  # the arbiter agrees with the lexicons: their reading stands
    by_intent = {s.intent: s for s in result.scores}
    for intent in {*by_intent, *chosen}:
        old = by_intent.get(intent)
        evidence = old.evidence if old else ()
        if intent in chosen and intent not in result.intents:
            evidence += tuple(f"learned: {w}" for w in model.evidence(subject, text, intent))
        elif intent in result.intents and intent not in chosen:
            x = log_odds[model.intents.index(intent)]
            p = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))
            evidence += (f"set aside: the learned model reads it otherwise ({p:.2f})",)
        by_intent[intent] = IntentScore(intent, round(decided[intent], 3), evidence)
    scores = tuple(sorted(by_intent.values(), key=lambda s: s.confidence, reverse=True))
    if chosen:
        return replace(result, intents=tuple(chosen), scores=scores, unclear=False, triage="")
    set_aside = [i for i in result.intents if i not in chosen]
    likely = max(decided, key=decided.__getitem__)
    if set_aside:
        triage = f"the lexicons read {'/'.join(set_aside)}, the learned model doubts it"
    elif result.unclear:
        triage = result.triage
    elif decided[likely] >= (ARBITER_UNCLEAR_AT if sets_aside else ELSEWHERE_UNCLEAR_AT):
        triage = f"possibly {likely} ({decided[likely]:.2f}), below the threshold"
    else:
        return replace(result, intents=(), scores=scores, unclear=False, triage="")
    return replace(result, intents=(), scores=scores, unclear=True, triage=triage)

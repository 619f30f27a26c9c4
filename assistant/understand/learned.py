"""A learned second opinion beside the lexicons.

The lexicons in intents/ are precise and explainable but only know the phrasings someone wrote
down; people find new ones every day ("kan dere glemme at jeg har vært kunde?"). A small logistic
regression over folded words, word stems and word pairs, trained on the labelled messages under
tests/data/ and the real request letters, catches many of those. It only ever ADDS an intent the
lexicons missed, and only when it is confident, so the look-alike protections of the lexicons
keep their say in every message they understood.

The weights live in intents/learned.npz, a data file like the lexicons; retrain it after the
labelled sets change with `python bench/train_learned.py` (it prints cross-validated figures).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import resources
from ..vocabulary import INTENTS, is_reply_subject
from .language import fold, folded_tokens, tokens

MODEL_FILE = "learned.npz"
DEFAULT_MODEL = resources.shipped("intents") / MODEL_FILE  # where bench/train_learned.py writes
# The request is nearly always in the first lines; the rest of a long mail is context or noise.
MAX_TOKENS = 300
# Weak regularisation, chosen leave-one-set-out on P and Q (bench/README.md): the old gradient
# descent (about C=20) under-fitted, scoring most unseen requests below one half.
TRAINING_C = 1000.0
# What the arbiter weighs for each intent (pipeline.arbiter_inputs computes them in this order):
# a constant, the lexicons' confidence and whether they chose it, whether a firm look-alike of it
# or of every intent ([any]) was found, the model's log-odds, and a [not_request] phrase.
ARBITER_INPUTS = ("constant", "lexicon_confidence", "lexicon_chose", "lookalike", "lookalike_any",
                  "learned_log_odds", "not_request")
STEM = 5  # a word's first letters stand for its inflections: slette, slettes, slettet -> slett


def _subject_words(subject: str) -> list[str]:
    """A reply's subject repeats what we wrote; it says nothing about the new request.
    Replies are recognised exactly as the lexicons recognise them (vocabulary.REPLY_PREFIX_RE)."""
    if is_reply_subject(subject):
        return []
    return tokens(fold(subject or ""))


def _message_words(subject: str, text: str, words: list[str] | None = None) -> list[str]:
    """The folded words the model reads: the subject's (unless a reply's), then the text's
    (`words`, when the caller has already split the text), at most MAX_TOKENS."""
    if words is None:
        words = folded_tokens(text or "")
    return (_subject_words(subject) + words)[:MAX_TOKENS]


def features(subject: str, text: str) -> set[str]:
    """Words, stems and neighbouring word pairs of the subject and the new text.
    LearnedModel._rows finds the same features by lookup; a test keeps the two in step."""
    words = _message_words(subject, text)
    found: set[str] = set()
    for word in words:
        found.add("w:" + word)
        if len(word) > STEM:
            found.add("p:" + word[:STEM])
    for first, second in zip(words, words[1:]):
        found.add(f"b:{first}_{second}")
    return found


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


@dataclass(frozen=True)
class LearnedModel:
    vocabulary: dict[str, int]
    weights: np.ndarray  # (features, intents)
    bias: np.ndarray  # (intents,)
    intents: tuple[str, ...] = INTENTS
    # The arbiter (bench/train_learned.py): per intent, weights over ARBITER_INPUTS that weigh
    # the lexicons' reading against the model's, learned on labelled sets the lexicons were
    # never tuned on. None: the model only adds what the lexicons missed (pipeline).
    arbiter: np.ndarray | None = None  # (intents, len(ARBITER_INPUTS))
    # An intent is chosen at this arbiter probability: one for all, or one per intent (in
    # self.intents' order; bench/train_learned.py picks each intent's own).
    arbiter_at: float | tuple[float, ...] = 0.5
    # The vocabulary split by kind, keyed by the bare word, stem or word pair: every message is
    # scored, and looking words up directly saves building a "w:"/"p:"/"b:" string per feature.
    _by_kind: tuple[dict, dict, dict] = field(init=False, repr=False, compare=False)
    _bias: list[float] = field(init=False, repr=False, compare=False)
    # The arbiter's weights as plain floats, one row per intent (pipeline sums them per message).
    arbiter_rows: tuple[tuple[float, ...], ...] = field(init=False, repr=False, compare=False)
    chosen_at: dict[str, float] = field(init=False, repr=False, compare=False)  # per intent

    def __post_init__(self) -> None:
        words: dict[str, int] = {}
        stems: dict[str, int] = {}
        pairs: dict[tuple[str, ...], int] = {}
        for name, row in self.vocabulary.items():
            kind, _, value = name.partition(":")
            if kind == "w":
                words[value] = row
            elif kind == "p":
                stems[value] = row
            elif kind == "b":
                pairs[tuple(value.split("_", 1))] = row
        object.__setattr__(self, "_by_kind", (words, stems, pairs))
        object.__setattr__(self, "arbiter_rows", () if self.arbiter is None else tuple(
            tuple(float(w) for w in row) for row in self.arbiter))
        at = self.arbiter_at
        object.__setattr__(self, "chosen_at", dict(zip(self.intents, (
            (float(at),) * len(self.intents) if isinstance(at, (int, float)) else map(float, at)))))
        object.__setattr__(self, "_bias", [float(b) for b in self.bias])

    def _rows(self, subject: str, text: str, words: list[str] | None = None) -> list[int]:
        """The vocabulary rows of features(subject, text), without building the feature names
        (a word pair is a tuple key; words never contain "_"). Sorted, so the sum of the weights
        and hence the probabilities are the same in every process."""
        words = _message_words(subject, text, words)
        by_word, by_stem, by_pair = self._by_kind
        found = set(map(by_word.get, words))
        found.update(map(by_stem.get, [word[:STEM] for word in words if len(word) > STEM]))
        found.update(map(by_pair.get, zip(words, words[1:])))
        found.discard(None)
        return sorted(found)

    def known_words(self, words: Sequence[str]) -> int:
        """How many of these folded words the model learned a weight for (seen in at least two
        labelled messages): few means a language the product does not read."""
        by_word = self._by_kind[0]
        return sum(1 for word in words if word in by_word)

    def probabilities(self, subject: str, text: str, words: list[str] | None = None
                      ) -> dict[str, float]:
        """Per intent, the model's probability that the message asks for it. `words`, if given,
        are the folded words of text (intents.read gives them). Eight numbers: plain floats
        after one numpy sum are cheaper than numpy's per-call overhead."""
        logits = self.log_odds(subject, text, words)
        return {intent: _sigmoid(x) for intent, x in zip(self.intents, logits)}

    def log_odds(self, subject: str, text: str, words: list[str] | None = None) -> list[float]:
        """Per intent (in self.intents' order), the model's log-odds: what the arbiter weighs."""
        rows = self._rows(subject, text, words)
        if not rows:
            return self._bias
        summed = self.weights.take(rows, axis=0).sum(axis=0).tolist()
        scale = 1.0 / math.sqrt(len(rows))
        return [b + s * scale for b, s in zip(self._bias, summed)]

    def evidence(self, subject: str, text: str, intent: str, k: int = 4) -> tuple[str, ...]:
        """The words that pushed hardest towards the intent, for --explain and for staff."""
        column = self.intents.index(intent)
        scored = [(self.weights[self.vocabulary[f], column], f) for f in features(subject, text)
                  if f in self.vocabulary]
        best = sorted((item for item in scored if item[0] > 0), reverse=True)[:k]
        return tuple(f.split(":", 1)[1].replace("_", " ") for _, f in best)

    def arbitrate(self, intent: str, inputs: Sequence[float]) -> float:
        """The arbiter's probability that the message asks for `intent`, given ARBITER_INPUTS."""
        assert self.arbiter is not None
        row = self.arbiter[self.intents.index(intent)]
        return _sigmoid(float(sum(w * x for w, x in zip(row.tolist(), inputs))))

    def save(self, path: Path) -> None:
        names = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        extra = {} if self.arbiter is None else {
            "arbiter": self.arbiter.astype(np.float32),
            "arbiter_at": np.array(self.arbiter_at, dtype=np.float32),
            "arbiter_inputs": np.array(ARBITER_INPUTS)}
        np.savez_compressed(path, vocabulary=np.array(names), weights=self.weights.astype(np.float16),
                            bias=self.bias.astype(np.float32), intents=np.array(self.intents),
                            **extra)


def _design(rows: Sequence[dict], min_count: int) -> tuple[dict[str, int], Any]:
    """The vocabulary (features seen in at least min_count rows) and the sparse design matrix,
    each row's features valued 1/sqrt(count), as LearnedModel.probabilities scales them."""
    from scipy import sparse

    found = [features(r.get("subject", ""), r.get("body", "")) for r in rows]
    counts = Counter(f for fs in found for f in fs)
    names = sorted(f for f, c in counts.items() if c >= min_count)
    vocabulary = {f: i for i, f in enumerate(names)}
    owners: list[int] = []
    columns: list[int] = []
    values: list[float] = []
    for i, fs in enumerate(found):
        idx = sorted(vocabulary[f] for f in fs if f in vocabulary)
        owners += [i] * len(idx)
        columns += idx
        values += [1.0 / math.sqrt(len(idx))] * len(idx) if idx else []
    matrix = sparse.csr_matrix((values, (owners, columns)), shape=(len(rows), len(names)),
                               dtype=np.float64)
    return vocabulary, matrix


def train(rows: Sequence[dict], *, min_count: int = 2, c: float = TRAINING_C) -> LearnedModel:
    """Logistic regression per intent (scikit-learn's liblinear; a few thousand rows: seconds).

    Each row is {"subject", "body", "intents"}; body is the new text (quotes already cut).
    scikit-learn is needed only to train (the `train` extra); scoring needs numpy alone.
    An intent that no row has, or every row has, gets its base rate as bias and no weights."""
    from sklearn.linear_model import LogisticRegression

    vocabulary, matrix = _design(rows, min_count)
    w = np.zeros((len(vocabulary), len(INTENTS)), dtype=np.float32)
    b = np.zeros(len(INTENTS), dtype=np.float32)
    for k, intent in enumerate(INTENTS):
        y = np.array([intent in r["intents"] for r in rows], dtype=bool)
        positives = int(y.sum())
        if positives in (0, len(rows)) or not vocabulary:
            b[k] = math.log((positives + 0.5) / (len(rows) - positives + 0.5))
            continue
        fitted = LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(matrix, y)
        w[:, k] = fitted.coef_[0]
        b[k] = fitted.intercept_[0]
    return LearnedModel(vocabulary, w, b)


def model_path() -> Path | None:
    """The learned.npz in use: the operator's intents folder's if it has one, else shipped."""
    return resources.find("intents", MODEL_FILE)


def load_model(path: Path | None = None) -> LearnedModel | None:
    """The model in use (see model_path), or None when there is none (the lexicons then work
    alone). A file of the wrong shape raises ValueError naming it: a half-trained or truncated
    file must stop `dsr check`, not add random intents."""
    if path is None:  # resources.find saw the file when it looked (and remembers): no stat
        found = model_path()
        return None if found is None else _load_model(found)
    if not isinstance(path, Path):  # every message asks: wrap a str once, not a Path twice
        path = Path(path)
    return _load_model(path) if path.exists() else None


@lru_cache(maxsize=4)
def _load_model(path: Path) -> LearnedModel:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("vocabulary", "weights", "bias", "intents")}
            if "arbiter" in data:
                arrays.update({key: data[key] for key in ("arbiter", "arbiter_at", "arbiter_inputs")})
    except KeyError as exc:
        raise ValueError(f"{path}: learned model has no array {exc.args[0]!r} "
                         "(expected vocabulary, weights, bias, intents; an arbiter needs "
                         "arbiter, arbiter_at and arbiter_inputs)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read learned model: {exc}") from None
    _check_shape(path, arrays)
    names = [str(n) for n in arrays["vocabulary"]]
    arbiter = arrays.get("arbiter")
    return LearnedModel(
        vocabulary={n: i for i, n in enumerate(names)},
        weights=arrays["weights"].astype(np.float32),
        bias=arrays["bias"].astype(np.float32),
        intents=tuple(str(i) for i in arrays["intents"]),
        arbiter=None if arbiter is None else arbiter.astype(np.float64),
        arbiter_at=_threshold(arrays["arbiter_at"]) if arbiter is not None else 0.5,
    )


def _threshold(value: np.ndarray) -> float | tuple[float, ...]:
    """One threshold for every intent (shape ()), or one per intent."""
    return float(value) if value.shape == () else tuple(float(v) for v in value)


def _check_shape(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """weights (features, intents), bias (intents,), intents known and unique."""
    features, intents = len(arrays["vocabulary"]), [str(i) for i in arrays["intents"]]
    unknown = [i for i in intents if i not in INTENTS]
    if unknown or len(set(intents)) != len(intents) or not intents:
        raise ValueError(f"{path}: learned model intents {intents} must be distinct names from "
                         f"{', '.join(INTENTS)}")
    expected = {"vocabulary": (features,), "weights": (features, len(intents)),
                "bias": (len(intents),)}
    if "arbiter" in arrays:
        inputs = [str(i) for i in arrays["arbiter_inputs"]]
        if inputs != list(ARBITER_INPUTS):
            raise ValueError(f"{path}: learned model arbiter weighs {inputs}, this version weighs "
                             f"{list(ARBITER_INPUTS)}: retrain it (bench/train_learned.py)")
        expected["arbiter"] = (len(intents), len(ARBITER_INPUTS))
        if arrays["arbiter_at"].shape != ():
            expected["arbiter_at"] = (len(intents),)
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(f"{path}: learned model {key} has shape {arrays[key].shape}, "
                             f"expected {shape} ({features} features x {len(intents)} intents)")

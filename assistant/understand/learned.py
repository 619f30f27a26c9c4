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

import numpy as np

from .. import resources
from ..vocabulary import INTENTS, is_reply_subject
from .language import fold, folded_tokens, tokens

MODEL_FILE = "learned.npz"
DEFAULT_MODEL = resources.shipped("intents") / MODEL_FILE  # where bench/train_learned.py writes
# The request is nearly always in the first lines; the rest of a long mail is context or noise.
MAX_TOKENS = 300
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
    # The vocabulary split by kind, keyed by the bare word, stem or word pair: every message is
    # scored, and looking words up directly saves building a "w:"/"p:"/"b:" string per feature.
    _by_kind: tuple[dict, dict, dict] = field(init=False, repr=False, compare=False)
    _bias: list[float] = field(init=False, repr=False, compare=False)

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

    def probabilities(self, subject: str, text: str, words: list[str] | None = None
                      ) -> dict[str, float]:
        """Per intent, the model's probability that the message asks for it. `words`, if given,
        are the folded words of text (intents.read gives them). Eight numbers: plain floats
        after one numpy sum are cheaper than numpy's per-call overhead."""
        rows = self._rows(subject, text, words)
        logits = self._bias
        if rows:
            summed = self.weights.take(rows, axis=0).sum(axis=0).tolist()
            scale = 1.0 / math.sqrt(len(rows))
            logits = [b + s * scale for b, s in zip(logits, summed)]
        return {intent: _sigmoid(x) for intent, x in zip(self.intents, logits)}

    def evidence(self, subject: str, text: str, intent: str, k: int = 4) -> tuple[str, ...]:
        """The words that pushed hardest towards the intent, for --explain and for staff."""
        column = self.intents.index(intent)
        scored = [(self.weights[self.vocabulary[f], column], f) for f in features(subject, text)
                  if f in self.vocabulary]
        best = sorted((item for item in scored if item[0] > 0), reverse=True)[:k]
        return tuple(f.split(":", 1)[1].replace("_", " ") for _, f in best)

    def save(self, path: Path) -> None:
        names = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        np.savez_compressed(path, vocabulary=np.array(names), weights=self.weights.astype(np.float16),
                            bias=self.bias.astype(np.float32), intents=np.array(self.intents))


def train(rows: Sequence[dict], *, min_count: int = 2, epochs: int = 2500, rate: float = 8.0,
          l2: float = 1e-5) -> LearnedModel:
    """Logistic regression per intent by full-batch gradient descent (a thousand rows: seconds).

    Each row is {"subject", "body", "intents"}; body is the new text (quotes already cut)."""
    found = [features(r.get("subject", ""), r.get("body", "")) for r in rows]
    counts = Counter(f for fs in found for f in fs)
    names = sorted(f for f, c in counts.items() if c >= min_count)
    vocabulary = {f: i for i, f in enumerate(names)}
    # The design matrix is sparse (a few hundred features of tens of thousands per row): keep
    # it as (row, column, value) triples, so an epoch costs the number of non-zeros, not
    # rows x features. x @ w is a per-row sum of weight rows; x.T @ error a per-column sum.
    columns: list[int] = []
    owners: list[int] = []
    values: list[float] = []
    for i, fs in enumerate(found):
        idx = sorted(vocabulary[f] for f in fs if f in vocabulary)
        if idx:
            columns += idx
            owners += [i] * len(idx)
            values += [1.0 / math.sqrt(len(idx))] * len(idx)
    col = np.array(columns, dtype=np.int64)
    own = np.array(owners, dtype=np.int64)
    val = np.array(values, dtype=np.float32)[:, None]
    y = np.array([[1.0 if label in r["intents"] else 0.0 for label in INTENTS] for r in rows],
                 dtype=np.float32)
    n, k = len(rows), len(INTENTS)
    w = np.zeros((len(names), k), dtype=np.float32)
    b = np.zeros(k, dtype=np.float32)
    # Contiguous runs: the triples are in row order; `by_col` puts them in column order.
    has_rows, row_starts = np.unique(own, return_index=True)
    by_col = np.argsort(col, kind="stable")
    has_cols, col_starts = np.unique(col[by_col], return_index=True)
    own_by_col, val_by_col = own[by_col], val[by_col]
    logits = np.zeros((n, k), dtype=np.float32)
    grad = np.zeros((len(names), k), dtype=np.float32)
    for _ in range(epochs):
        if len(col):
            logits[has_rows] = np.add.reduceat(w[col] * val, row_starts, axis=0)
        p = 1.0 / (1.0 + np.exp(-(logits + b)))
        error = p - y
        if len(col):
            grad[has_cols] = np.add.reduceat(error[own_by_col] * val_by_col, col_starts, axis=0)
        w -= rate * (grad / n + l2 * w)
        b -= rate * error.mean(axis=0)
    return LearnedModel(vocabulary, w, b)


def model_path() -> Path | None:
    """The learned.npz in use: the operator's intents folder's if it has one, else shipped."""
    return resources.find("intents", MODEL_FILE)


def load_model(path: Path | None = None) -> LearnedModel | None:
    """The model in use (see model_path), or None when there is none (the lexicons then work
    alone). A file of the wrong shape raises ValueError naming it: a half-trained or truncated
    file must stop `dsr check`, not add random intents."""
    path = path or model_path()
    if path is None:
        return None
    if not isinstance(path, Path):  # every message asks: wrap a str once, not a Path twice
        path = Path(path)
    return _load_model(path) if path.exists() else None


@lru_cache(maxsize=4)
def _load_model(path: Path) -> LearnedModel:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("vocabulary", "weights", "bias", "intents")}
    except KeyError as exc:
        raise ValueError(f"{path}: learned model has no array {exc.args[0]!r} "
                         "(expected vocabulary, weights, bias, intents)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read learned model: {exc}") from None
    _check_shape(path, arrays)
    names = [str(n) for n in arrays["vocabulary"]]
    return LearnedModel(
        vocabulary={n: i for i, n in enumerate(names)},
        weights=arrays["weights"].astype(np.float32),
        bias=arrays["bias"].astype(np.float32),
        intents=tuple(str(i) for i in arrays["intents"]),
    )


def _check_shape(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """weights (features, intents), bias (intents,), intents known and unique."""
    features, intents = len(arrays["vocabulary"]), [str(i) for i in arrays["intents"]]
    unknown = [i for i in intents if i not in INTENTS]
    if unknown or len(set(intents)) != len(intents) or not intents:
        raise ValueError(f"{path}: learned model intents {intents} must be distinct names from "
                         f"{', '.join(INTENTS)}")
    expected = {"vocabulary": (features,), "weights": (features, len(intents)),
                "bias": (len(intents),)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(f"{path}: learned model {key} has shape {arrays[key].shape}, "
                             f"expected {shape} ({features} features x {len(intents)} intents)")

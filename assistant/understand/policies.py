"""Organisations' privacy policies as data, and a small retriever over their sections.

A policy lives in ``policies/<org>.md`` so a privacy officer can edit it without touching code:

    +++
    id = "branninfo"            # TOML front matter
    name = "Branninfo AS"
    source = "000_f9795a081d0f95de.txt"
    language = "nb"
    systems = ["TMG", "Visma", "CRM"]
    addresses = ["kundesenter@branninfo.no"]
    retention_law = ["regnskapsloven"]
    +++

    # Optional document title

    Optional preamble (text before the first section; kept, never quoted).

    ## Section heading
    <!-- intents: access, erasure; topics: retention, oppbevaring -->

    The policy text, verbatim.

Every heading of level 2 or deeper starts a section. The HTML comment right under a heading says
which rights (intents) the section speaks to and which extra words (topics) the retriever should
match; ``none`` or an empty list means nothing. Sections without text are kept (the heading is
part of the policy) but are never returned, because there is nothing to quote.

The retriever is deliberately small: BM25 over heading, text and topics, with Scandinavian and
English folding, light suffix stripping, compound splitting against the policy's own vocabulary
and rapidfuzz for typos. Policies are a few dozen sections; no model is needed.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rapidfuzz import fuzz, process

from .. import resources
from ..text import fold
from ..vocabulary import INTENTS

DEFAULT_POLICIES = resources.shipped("policies")

@dataclass(frozen=True)
class Section:
    org: str
    id: str
    heading: str
    text: str
    intents: tuple[str, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    org: str
    name: str
    language: str
    sections: tuple[Section, ...]
    source: str
    systems: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    retention_law: tuple[str, ...] = ()
    title: str = ""
    preamble: str = ""

    def section(self, section_id: str) -> Section:
        """Look a section up by id; drafts and reviews refer to sections by id."""
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(f"{self.org}: no section {section_id!r}")


# --------------------------------------------------------------------------- loading

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*$")
_META = re.compile(r"^<!--(.*?)-->\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _fail(path: Path, line: int, message: str) -> ValueError:
    return ValueError(f"{path}:{line}: {message}")


def slugify(heading: str) -> str:
    """Section ids must stay stable and ASCII so staff can type them and audits can cite them;
    the shared fold gives "PERSONVERNERKLÆRING" -> "personvernerklaering"."""
    return re.sub(r"[^a-z0-9]+", "-", fold(heading)).strip("-") or "section"


def load_policy(path: Path) -> Policy:
    """Parse one policy file; a mistake is reported with file and line so an officer can fix it."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read policy file: {exc}") from exc
    lines = content.splitlines()
    front, body_start = _front_matter(path, lines)
    title, preamble, sections = _sections(path, lines, body_start, front["id"])
    if not sections:
        raise _fail(path, len(lines) or 1, "no sections: a policy needs at least one '## Heading'")
    return Policy(
        org=front["id"],
        name=front["name"],
        language=front["language"],
        sections=tuple(sections),
        source=front["source"],
        systems=front["systems"],
        addresses=front["addresses"],
        retention_law=front["retention_law"],
        title=title,
        preamble=preamble,
    )


def _front_matter(path: Path, lines: list[str]) -> tuple[dict, int]:
    """Return the validated front matter and the index of the first body line."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first].strip() != "+++":
        raise _fail(path, (first or 0) + 1, "policy must start with a '+++' front matter line")
    end = next((i for i in range(first + 1, len(lines)) if lines[i].strip() == "+++"), None)
    if end is None:
        raise _fail(path, first + 1, "front matter opened with '+++' is never closed")
    raw = "\n".join(lines[first + 1 : end])
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = first + 1 + int(match.group(1)) if match else first + 1
        raise _fail(path, line, f"invalid TOML in front matter: {exc}") from exc
    return _validate_front(path, data, first + 1), end + 1


def _validate_front(path: Path, data: dict, line: int) -> dict:
    out: dict = {}
    for key in ("id", "name", "source", "language"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, line, f"front matter needs a non-empty string '{key}'")
        out[key] = value.strip()
    if not _ORG_ID.match(out["id"]):
        raise _fail(path, line, f"org id {out['id']!r} must be lowercase letters, digits, - or _")
    for key in ("systems", "addresses", "retention_law"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(path, line, f"front matter '{key}' must be a list of strings")
        out[key] = tuple(v.strip() for v in value if v.strip())
    return out


def _sections(
    path: Path, lines: list[str], start: int, org: str
) -> tuple[str, str, list[Section]]:
    title = ""
    preamble: list[str] = []
    blocks: list[tuple[int, str, list[tuple[int, str]]]] = []  # (line no, heading, body lines)
    for index in range(start, len(lines)):
        line, number = lines[index], index + 1
        match = _HEADING.match(line)
        if match and len(match.group(1)) >= 2:
            if not match.group(2):
                raise _fail(path, number, "heading without text")
            blocks.append((number, match.group(2), []))
        elif match:
            if blocks or title:
                raise _fail(path, number, "only one '# Title' is allowed, before the sections; "
                                          "use '## Heading' for a section")
            title = match.group(2)
        elif blocks:
            blocks[-1][2].append((number, line))
        else:
            preamble.append(line)
    seen: dict[str, int] = {}
    sections = [_section(path, org, number, heading, body, seen)
                for number, heading, body in blocks]
    return title, _clean("\n".join(preamble)), sections


def _section(
    path: Path, org: str, number: int, heading: str, body: list[tuple[int, str]],
    seen: dict[str, int],
) -> Section:
    intents: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    rest = list(body)
    while rest and not rest[0][1].strip():
        rest.pop(0)
    if rest and rest[0][1].lstrip().startswith("<!--"):
        meta_line, meta_text = rest.pop(0)
        intents, topics = _parse_meta(path, meta_line, meta_text.strip())
    for line_no, line in rest:
        if re.match(r"\s*<!--\s*(intents|topics)\s*:", line):
            raise _fail(path, line_no, "metadata comment must be the first line under its heading")
    text = _clean("\n".join(line for _, line in rest))
    if "<!--" in text or "-->" in text:
        bad = next(n for n, line in rest if "<!--" in line or "-->" in line)
        raise _fail(path, bad, "unclosed HTML comment in section text")
    base = slugify(heading)
    seen[base] = seen.get(base, 0) + 1
    section_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return Section(org=org, id=section_id, heading=heading, text=text, intents=intents,
                   topics=topics)


def _parse_meta(path: Path, number: int, line: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Parse ``<!-- intents: a, b; topics: x, y -->``; unknown intents are errors, not silence."""
    match = _META.match(line)
    if not match:
        raise _fail(path, number, "metadata comment must be on one line and end with '-->'")
    values: dict[str, tuple[str, ...]] = {"intents": (), "topics": ()}
    for part in filter(None, (p.strip() for p in match.group(1).split(";"))):
        key, sep, raw = part.partition(":")
        key = key.strip().lower()
        if not sep or key not in values:
            raise _fail(path, number, f"expected 'intents: …; topics: …' in metadata, got {part!r}")
        items = tuple(v.strip() for v in raw.split(",") if v.strip())
        values[key] = () if [i.lower() for i in items] == ["none"] else items
    intents = tuple(i.lower() for i in values["intents"])
    for intent in intents:
        if intent not in INTENTS:
            raise _fail(path, number, f"unknown intent {intent!r}; use one of {', '.join(INTENTS)}")
    return intents, values["topics"]


def _clean(text: str) -> str:
    """Drop editor comments and surrounding blank lines; the policy wording itself is untouched."""
    text = _COMMENT.sub("", text)
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n")).strip("\n")


def load_policies(directory: Path = DEFAULT_POLICIES) -> dict[str, Policy]:
    """Load every ``*.md`` policy in a folder, keyed by org id; one org in two files is an error."""
    policies: dict[str, Policy] = {}
    for path in sorted(Path(directory).glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        policy = load_policy(path)
        if policy.org in policies:
            raise ValueError(f"{path}:1: org id {policy.org!r} is already used by another policy")
        policies[policy.org] = policy
    return policies


# --------------------------------------------------------------------------- normalisation

# The retriever spells Danish/Norwegian æ and Swedish ä as e before the shared fold, so Danish
# "længe" and Swedish "länge" meet Norwegian "lenge" and "rätt" meets "rett". This is the
# retriever's spelling bridge, like SYNONYMS below, not a fold of its own: the classifier must
# keep æ apart from e (bokmål "være" vs nynorsk "vere" tells the languages apart).
_NORDIC_E = str.maketrans({"æ": "e", "Æ": "e", "ä": "e", "Ä": "e"})

# In the retriever's form (see _search_form): "på" is "pa", "være" is "vere".
STOPWORDS = frozenset(
    """
    og i pa til av for med om fra som er var vere blir ble har hadde kan vil skal ma
    den det de dem en ei et eit denne dette disse jeg eg meg mi min mitt mine du deg din ditt
    dine dere dykk dykkar han hun ho hen vi oss var vart vare seg sin sitt sine
    hva kva hvor kvar hvordan korleis hvorfor kvifor hvem kven hvilke kva hvilken hvilket
    nar naar ikke ikkje inte ikk ogsa ogso sa saa at enn eller men bare berre
    jag mig dig ni oss er ert era och pa av till fran som ar om hur vad vem vilka varfor
    jeg mig dig jer vi os hvad hvem hvilke hvordan hvorfor ikke
    the a an and or of to in on for with from by at is are was were be been do does did
    you your yours we our ours us i me my mine it its this that these those what which who
    how why when where can could would should will shall may might please hi hello dear
    hei hallo takk thanks regards mvh ha hatt fa far gjerne gerne kunne jo nok bli blir
    hur mina dina sina mitt ditt eder jer ni ju ska
    """.split()
)

_SUFFIXES = tuple(
    sorted(
        """hetene heten hetens elsene elsen ings ing
        ene ane ende ede ies ert ers ens ets er en et ar or es ed s a e""".split(),
        key=len,
        reverse=True,
    )
)


def _search_form(text: str) -> str:
    """The shared fold after the æ/ä -> e spelling bridge, so nb, nn, sv, da and en meet."""
    return fold(text.translate(_NORDIC_E))


def stem(word: str) -> str:
    """Strip up to two inflection suffixes: enough to make 'lagrer', 'lagres', 'lagringen' and
    nynorsk 'opplysningar' meet their bokmål forms, without a full stemmer."""
    for _ in range(2):
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                word = word[: -len(suffix)]
                break
        else:
            break
    return word


def words(text: str) -> list[str]:
    """Folded content words of a text, without stop words."""
    return [w for w in re.findall(r"[a-z0-9]+", _search_form(text)) if w not in STOPWORDS]


# Swedish and Danish words that fuzzy matching cannot bridge to the Norwegian policy text.
SYNONYMS: dict[str, str] = {
    "spara": "lagre", "sparar": "lagrer", "sparas": "lagres", "sparat": "lagret",
    "gemme": "lagre", "gemmer": "lagrer", "gemmes": "lagres", "gemt": "lagret",
    "uppgift": "opplysning", "uppgifter": "opplysninger", "uppgifterna": "opplysningene",
    "personuppgifter": "personopplysninger", "oplysninger": "opplysninger",
    "personoplysninger": "personopplysninger",
    "radera": "slette", "raderar": "sletter", "radering": "sletting", "raderas": "slettes",
    "slet": "slett", "sletning": "sletting",
    "inspelning": "opptak", "inspelningar": "opptak", "optagelse": "opptak",
    "optagelser": "opptak", "optag": "opptak",
    "indsigt": "innsyn", "aktindsigt": "innsyn", "registerutdrag": "innsyn",
    "rattelse": "retting", "berigtigelse": "retting", "invandning": "protest",
    "indsigelse": "protest", "overvagning": "overvakning",
}


# --------------------------------------------------------------------------- index

K1 = 1.2
B = 0.75
FIELD_WEIGHT = {"heading": 2.0, "text": 1.0, "topics": 1.5}
COMPOUND_PART_WEIGHT = 0.6
FUZZY_CUTOFF = 85.0
MIN_SCORE = 2.0
# Words nearly every privacy question contains; they may help rank but must not carry a match.
WEAK_WORDS = frozenset("""data info information informasjon opplysning opplysninger
    personopplysninger personlig personlige personal persondata""".split())
WEAK_WEIGHT = 0.4
RELATIVE_CUT = 0.35


@dataclass(frozen=True)
class _Index:
    sections: tuple[Section, ...]
    tf: tuple[dict[str, float], ...]
    lengths: tuple[float, ...]
    avg_length: float
    idf: dict[str, float]
    surface: dict[str, str]  # folded surface form -> stem, for typo matching


def _compound_parts(word: str, vocab: set[str], prefixes: set[str]) -> list[str]:
    """Split a compound ('telefonopptak') into known stems; fall back to its longest known head."""
    if len(word) < 7:
        return []
    for cut in range(len(word) - 3, 3, -1):
        head, tail = word[:cut], word[cut:]
        if head not in prefixes and stem(head) not in vocab:
            continue
        for rest in (tail, tail[1:] if tail[0] in "se" else ""):
            if len(rest) >= 3 and stem(rest) in vocab:
                return [stem(head), stem(rest)]
    for cut in range(len(word) - 3, 4, -1):
        head = word[:cut]
        if stem(head) in vocab and len(stem(head)) >= 5:
            return [stem(head)]
    return []


def _fields(section: Section) -> dict[str, list[str]]:
    return {
        "heading": words(section.heading),
        "text": words(section.text),
        "topics": words(" ".join(section.topics)),
    }


@lru_cache(maxsize=64)
def _index(policy: Policy) -> _Index:
    sections = tuple(s for s in policy.sections if s.text.strip())
    fields = [_fields(s) for s in sections]
    surface = {w: stem(w) for f in fields for ws in f.values() for w in ws}
    vocab = set(surface.values())
    prefixes = set(surface)
    tfs: list[dict[str, float]] = []
    lengths: list[float] = []
    for field_words in fields:
        tf: dict[str, float] = {}
        length = 0.0
        for name, ws in field_words.items():
            weight = FIELD_WEIGHT[name]
            for w in ws:
                tf[stem(w)] = tf.get(stem(w), 0.0) + weight
                for part in _compound_parts(w, vocab, prefixes):
                    if part != stem(w):
                        tf[part] = tf.get(part, 0.0) + weight * COMPOUND_PART_WEIGHT
                length += weight
        tfs.append(tf)
        lengths.append(length)
    n = len(sections)
    df: dict[str, int] = {}
    for tf in tfs:
        for term in tf:
            df[term] = df.get(term, 0) + 1
    idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
    avg = sum(lengths) / n if n else 1.0
    return _Index(sections, tuple(tfs), tuple(lengths), avg or 1.0, idf, surface)


# A question is a few sentences; the longest Norwegian compounds are about 40 letters. Beyond
# these, text is pasted data, and compound splitting and typo matching grow with its square.
MAX_QUERY_CHARS = 5_000
MAX_WORD_CHARS = 48


def _query_terms(index: _Index, query: str) -> dict[str, float]:
    """Map a free-text query to weighted index terms (exact, compound parts, then typo matches)."""
    vocab = set(index.idf)
    prefixes = set(index.surface)
    terms: dict[str, float] = {}

    def add(term: str, weight: float) -> None:
        terms[term] = max(terms.get(term, 0.0), weight)

    for word in words(query[:MAX_QUERY_CHARS]):
        if len(word) > MAX_WORD_CHARS:  # no word is this long; a pasted blob would cost O(n²)
            continue
        word = SYNONYMS.get(word, word)
        term = stem(word)
        weight = WEAK_WEIGHT if word in WEAK_WORDS else 1.0
        # Only a full split counts on the query side: a bare head ('brann' of 'brannslukker')
        # would match far too much.
        parts = [p for p in _compound_parts(word, vocab, prefixes) if p in vocab and p != term]
        if len(parts) == 2:
            for part in parts:
                add(part, weight * (COMPOUND_PART_WEIGHT + (0.0 if term in vocab else 0.2)))
        else:
            parts = []
        if term in vocab:
            add(term, weight)
            continue
        if parts:
            continue
        # Part of a compound in the policy: 'samtalene' inside 'telefonsamtaler'.
        inside = [s for s in index.surface if len(term) >= 5 and len(s) > len(term) + 2
                  and term in s]
        if inside:
            for surface in inside:
                add(index.surface[surface], COMPOUND_PART_WEIGHT)
            continue
        if len(word) >= 5 and index.surface:
            hit = process.extractOne(word, list(index.surface), scorer=fuzz.ratio,
                                     score_cutoff=FUZZY_CUTOFF)
            if hit:
                add(index.surface[hit[0]], 0.8 * hit[1] / 100.0)
    return terms


def _bm25(index: _Index, terms: dict[str, float]) -> list[float]:
    scores = []
    for tf, length in zip(index.tf, index.lengths):
        score = 0.0
        norm = K1 * (1 - B + B * length / index.avg_length)
        for term, weight in terms.items():
            f = tf.get(term, 0.0)
            if f:
                score += weight * index.idf[term] * f * (K1 + 1) / (f + norm)
        scores.append(score)
    return scores


def search(policy: Policy, query: str, k: int = 3) -> list[tuple[Section, float]]:
    """Best sections for a free-text question; [] when nothing clears the bar, never a guess."""
    index = _index(policy)
    terms = _query_terms(index, query)
    if not terms or not index.sections:
        return []
    scores = _bm25(index, terms)
    ranked = sorted(zip(index.sections, scores), key=lambda pair: -pair[1])
    if not ranked or ranked[0][1] < MIN_SCORE:
        return []
    floor = max(MIN_SCORE, ranked[0][1] * RELATIVE_CUT)
    return [(s, round(score, 4)) for s, score in ranked[:k] if score >= floor]


# Words that describe each right, used only to order the sections a policy tags for it.
INTENT_TERMS: dict[str, str] = {
    "access": "innsyn tilgang kopi utlevere utleveres rett access copy",
    "erasure": "slette sletting slettes glemt anonymisere oppbevaring lagres delete erase "
               "retention",
    "portability": "dataportabilitet overfore filformat json portability transfer ta med",
    "opt_out": "markedsforing avregistrere reservere melde nyhetsbrev marketing unsubscribe",
    "rectification": "rette rettet retting uriktige ufullstendige supplert feil correct rectify",
    "restriction": "begrense begrensning restrict restriction",
    "objection": "motsette protest innsigelse profilering object objection profiling",
    "question": "",
}


HEADING_BONUS = 3.0


def _heading_names(section: Section, terms: dict[str, float]) -> bool:
    """A section whose heading names the right ('2. MARKEDSFØRING') is the one to quote first,
    however long its text is."""
    return any(stem(w) in terms for w in words(section.heading))


def sections_for_intent(policy: Policy, intent: str, k: int = 3) -> list[tuple[Section, float]]:
    """Sections the officer tagged for this right, most relevant first; [] means the policy is
    silent and the draft must state the right in plain words instead of quoting something."""
    if intent not in INTENTS:
        raise ValueError(f"unknown intent {intent!r}; use one of {', '.join(INTENTS)}")
    index = _index(policy)
    terms = _query_terms(index, INTENT_TERMS[intent]) if INTENT_TERMS[intent] else {}
    scores = _bm25(index, terms) if terms else [0.0] * len(index.sections)
    tagged = [
        (section, 1.0 + score + (HEADING_BONUS if _heading_names(section, terms) else 0.0))
        for section, score in zip(index.sections, scores)
        if intent in section.intents
    ]
    tagged.sort(key=lambda pair: -pair[1])
    return [(s, round(score, 4)) for s, score in tagged[:k]]

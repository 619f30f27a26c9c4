"""Render the real-world GDPR request letters (datarequests.org templates) into labelled test letters.

The templates are letters that real people send; rendering them with every option gives the
classifier text it was never tuned on, in the exact legal phrasing it meets in the field.

Template syntax (see ../shared/realworld/datarequests/README.md), handled generally:
- ``{variable}``: a value the sender fills in. Some "variables" are free-text instructions
  (``{Beschreibung des Problems, z. B.: Leider ...}``): we fill them with their example text.
- ``[flag>text]``: text present only when option ``flag`` is ticked. Flags nest, may contain
  variables, and a few templates leave one unclosed: it then runs to the end of its paragraph.
- ``[label: text]`` with no ``>``: an optional sentence the sender may keep; we keep the text.
- ``<italic>…</italic>``: markup, removed.

Labels follow the README table: access-* -> access (+ portability with data_portability);
erasure-* -> erasure (+ objection with include_objection); objection-* -> opt_out;
rectification-* -> rectification; admonition-* and complaint-* -> [] (no new request to us).

Run ``python bench/realworld_letters.py`` for a summary, ``--dump`` for the letters as JSON lines.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Invented values only: no real person, address or phone number.
VALUES: dict[str, str] = {
    "id_data": "Kari Nordmann\nStorgata 1, 0155 Oslo\nkari.nordmann@example.no\n+47 400 00 000",
    "runs_list": "nettbutikk.example.no, kundeklubben",
    "request_date": "12.01.2026",
    "request_article": "15",
    "request_recipient_address": "Eksempel AS, Postboks 1, 0101 Oslo",
    "rectification_data": "Storgata 1, 0155 Oslo ⇒ Kongens gate 12, 7011 Trondheim",
    "erasure_data": "kari.nordmann@example.no, +47 400 00 000",
    "objection_reason": "",  # optional in the generator; senders often leave it empty
    "artikel": "15",
}
CONTACT_VALUE = "kari.nordmann@example.no"
NAME_VALUE = "Kari Nordmann"
FALLBACK_VALUE = "12.01.2026, 09.02.2026"

FLAG_HEAD = re.compile(r"\[([^\[\]>\n]{1,40})>")
OPTIONAL_HEAD = re.compile(r"\[\s*[^\s\[\]:>]{1,20}\s*:\s*")
TAG = re.compile(r"</?[a-zA-Z]+>")
CONTACT_WORDS = re.compile(r"e-?mail|e-?post|kontakt|contact|telef|phone|adres|address", re.I)


@dataclass
class Flag:
    name: str
    parts: list = field(default_factory=list)


def _find_close(text: str, start: int, open_ch: str, close_ch: str) -> int | None:
    """Index of the bracket closing the one opened just before ``start``, or None if unclosed."""
    depth = 1
    for i in range(start, len(text)):
        ch = text[i]
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i
    return None


def _paragraph_end(text: str, start: int) -> int:
    """Where an unclosed flag stops: the sender's option covers one paragraph at most."""
    end = text.find("\n\n", start)
    return len(text) if end < 0 else end


def parse(text: str) -> list:
    """Parse template text into a tree of strings, ('var', name) tuples and Flag nodes."""
    parts: list = []
    buf: list[str] = []
    i = 0

    def flush() -> None:
        if buf:
            parts.append("".join(buf))
            buf.clear()

    while i < len(text):
        ch = text[i]
        if ch == "[":
            head = FLAG_HEAD.match(text, i)
            if head:
                body_start = head.end()
                close = _find_close(text, body_start, "[", "]")
                # An unclosed flag, or one whose "close" lies paragraphs away, ends at its paragraph.
                par_end = _paragraph_end(text, body_start)
                if close is None or close > par_end and "[" not in text[body_start:par_end]:
                    close, skip = par_end, 0
                else:
                    skip = 1
                flush()
                parts.append(Flag(head.group(1).strip(), parse(text[body_start:close])))
                i = close + skip
                continue
            close = _find_close(text, i + 1, "[", "]")
            if close is not None:
                inner = text[i + 1 : close]
                label = OPTIONAL_HEAD.match(text, i)
                if label and label.end() <= close:
                    flush()
                    parts.extend(parse(text[label.end() : close]))
                    i = close + 1
                    continue
                flush()  # a literal bracketed aside: keep it, brackets included
                parts.extend(["[", *parse(inner), "]"])
                i = close + 1
                continue
            i += 1  # stray opening bracket: drop it
            continue
        if ch == "{":
            close = text.find("}", i + 1)
            if close >= 0 and "{" not in text[i + 1 : close]:
                flush()
                parts.append(("var", text[i + 1 : close]))
                i = close + 1
                continue
            i += 1  # stray brace: drop
            continue
        if ch in "]}":
            i += 1  # stray closing bracket or brace (a typo in a template): drop
            continue
        buf.append(ch)
        i += 1
    flush()
    return parts


def fill_variable(name: str) -> str:
    """A plausible value for a variable; free-text instructions get their own example text."""
    key = name.strip()
    if key.lower() in VALUES:
        return VALUES[key.lower()]
    if re.fullmatch(r"\w+", key):
        return NAME_VALUE
    example = re.search(r":\s*(.+)$", key, re.S)
    if example and len(example.group(1)) > 20:
        return example.group(1).strip()
    if CONTACT_WORDS.search(key):
        return CONTACT_VALUE
    return FALLBACK_VALUE


def flags_in(tree: list) -> list[str]:
    """Flag names in order of first appearance, nested ones included."""
    seen: list[str] = []
    for node in tree:
        if isinstance(node, Flag):
            if node.name not in seen:
                seen.append(node.name)
            seen.extend(n for n in flags_in(node.parts) if n not in seen)
    return seen


def render_tree(tree: list, on: set[str]) -> str:
    out: list[str] = []
    for node in tree:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Flag):
            if node.name in on:
                out.append(render_tree(node.parts, on))
        else:
            out.append(fill_variable(node[1]))
    return "".join(out)


def tidy(text: str) -> str:
    """Remove markup and the blank-line clutter that switched-off options leave behind."""
    text = TAG.sub("", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def intents_for(stem: str, on: set[str]) -> list[str] | None:
    """Labels per the README table; None for a file kind the table does not cover."""
    kind = stem.split("-", 1)[0]
    if kind == "access":
        return ["access"] + (["portability"] if "data_portability" in on else [])
    if kind == "erasure":
        return ["erasure"] + (["objection"] if "include_objection" in on else [])
    if kind == "objection":
        return ["opt_out"]
    if kind == "rectification":
        return ["rectification"]
    if kind in ("admonition", "complaint"):
        return []
    return None


def templates_dir(root: Path | None = None) -> Path:
    """Find the templates folder: argument, then DSR_REALWORLD, then ../shared beside the repo."""
    candidates: list[Path] = []
    if root is not None:
        candidates.append(Path(root))
    if os.environ.get("DSR_REALWORLD"):
        candidates.append(Path(os.environ["DSR_REALWORLD"]))
    candidates.append(REPO.parent / "shared" / "realworld" / "datarequests")
    for base in candidates:
        for cand in (base / "templates", base / "datarequests" / "templates", base):
            if cand.is_dir() and any(cand.glob("*/*.txt")):
                return cand
    raise FileNotFoundError(
        "datarequests templates not found; pass root or set DSR_REALWORLD "
        f"(tried {', '.join(str(c) for c in candidates)})"
    )


def render_letters(root: Path | None = None) -> list[dict]:
    """Every template with all options off, then once with each of its options on."""
    letters: list[dict] = []
    for path in sorted(templates_dir(root).glob("*/*.txt")):
        lang, stem = path.parent.name, path.stem
        tree = parse(path.read_text(encoding="utf-8"))
        variants: list[set[str]] = [set()] + [{f} for f in flags_in(tree)]
        for on in variants:
            intents = intents_for(stem, on)
            if intents is None:
                continue
            suffix = "".join(f"+{f}" for f in sorted(on))
            letters.append(
                {
                    "id": f"{lang}/{stem}{suffix}",
                    "language": lang,
                    "subject": "",
                    "body": tidy(render_tree(tree, on)),
                    "intents": intents,
                }
            )
    return letters


def main(argv: list[str]) -> int:
    letters = render_letters()
    if "--dump" in argv:
        for letter in letters:
            print(json.dumps(letter, ensure_ascii=False))
        return 0
    print(f"{len(letters)} letters")
    print("by language:", dict(sorted(Counter(l["language"] for l in letters).items())))
    print("by labels:", dict(Counter("+".join(l["intents"]) or "none" for l in letters)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

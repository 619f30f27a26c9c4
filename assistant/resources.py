"""Where the shipped data lives, and the operator's folders laid over it.

The product ships data a privacy officer edits (intents/, mail_templates/, policies/) beside
the code, plus files the code itself needs (default_config.toml; the Alembic migrations, which
store/db.py finds by importlib.resources on its own package, as the store imports nothing else of
the package). This is the ONE module that knows where the data is, so a wheel installed anywhere
and a source checkout behave alike:

- installed from a wheel: the build copies the three top-level folders into ``assistant/_data/``
  (see setup.py), found here through ``importlib.resources``;
- editable install or source checkout: there is no ``_data``; the folders are the repository's
  own top-level ``intents/``, ``mail_templates/`` and ``policies/``, next to the package.

An operator may name their own folders in the config (``[data]``). They override the shipped ones
file by file: a file in the operator's folder wins over the shipped file of the same name, the
rest still comes from the shipped folder. ``configure(settings)`` is called once by the CLI after
the settings are loaded; the loaders' defaults read the folders from here.

This module imports nothing else of the package, so any layer may ask it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the type of configure(); config.py imports this module
    from .config import Settings

PACKAGE = "assistant"
DATA_FOLDERS = ("intents", "mail_templates", "policies")
_BUILT_DATA = "_data"  # inside the package of a built wheel


class ResourceError(Exception):
    """Shipped data that is not where the install should have put it."""


@lru_cache(maxsize=1)
def package_dir() -> Path:
    """The installed package as a real folder: loaders (Jinja, glob, numpy) need paths."""
    root = files(PACKAGE)
    if not isinstance(root, Path):
        raise ResourceError(f"the {PACKAGE} package is not installed as plain files ({root})")
    return root


@lru_cache(maxsize=8)
def shipped(folder: str) -> Path:
    """The shipped copy of intents/, mail_templates/ or policies/ for this install mode."""
    if folder not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {folder!r}; use one of {', '.join(DATA_FOLDERS)}")
    built = package_dir() / _BUILT_DATA / folder
    if built.is_dir():
        return built
    checkout = package_dir().parent / folder
    if checkout.is_dir():
        return checkout
    raise ResourceError(f"shipped data folder {folder}/ not found (looked in {built} and {checkout})")


def default_config() -> Path:
    """The embedded defaults every config file is laid over."""
    return package_dir() / "default_config.toml"


# --------------------------------------------------------------------------- operator folders


@dataclass(frozen=True)
class Overrides:
    """The operator's own folders, already resolved; None means "shipped only"."""

    intents: Path | None = None
    mail_templates: Path | None = None
    policies: Path | None = None


_overrides = Overrides()


def configure(settings: Settings) -> None:
    """Take the operator's [data] folders from the settings; called once after loading them."""
    data = settings.data
    global _overrides
    _overrides = Overrides(
        intents=settings.resolve_path(data.intents_dir),
        mail_templates=settings.resolve_path(data.templates_dir),
        policies=settings.resolve_path(data.policies_dir),
    )


def reset() -> None:
    """Back to the shipped data only (tests, and a process that drops its config)."""
    global _overrides
    _overrides = Overrides()


def overrides() -> Overrides:
    return _overrides


def layers(folder: str, current: Overrides | None = None) -> tuple[Path, ...]:
    """The folders to look in for one kind of data, the operator's first, the shipped last."""
    own = getattr(current or _overrides, folder)
    return (own, shipped(folder)) if own is not None else (shipped(folder),)


def find(folder: str, name: str) -> Path | None:
    """The file `name` (e.g. "languages.toml", "learned.npz") from the first layer that has it.
    Remembered per set of folders: loaders ask for every message, the answer changes only with
    the configuration."""
    return _find(_overrides, folder, name)


@lru_cache(maxsize=64)
def _find(current: Overrides, folder: str, name: str) -> Path | None:
    for base in layers(folder, current):
        if (base / name).is_file():
            return base / name
    return None


def merged_files(directories: tuple[Path, ...], pattern: str) -> list[Path]:
    """Files matching `pattern` over several folders, file by file: an earlier folder's file wins
    over a later folder's file of the same name. Sorted by name, so loading order is stable."""
    chosen: dict[str, Path] = {}
    for base in directories:
        for path in Path(base).glob(pattern):
            if path.is_file():
                chosen.setdefault(path.name, path)
    return [chosen[name] for name in sorted(chosen)]


def policy_candidates(policy: str, config_dir: Path, own_folder: Path | None = None) -> list[Path]:
    """Where an organisation's `policy` path is looked for, in order: next to the config file,
    in the current folder, in the operator's policies folder (`own_folder`), then the shipped
    policies. In a folder, the path as written ("policies/acme.md") and its bare file name."""
    path = Path(policy).expanduser()
    if path.is_absolute():
        return [path]
    found = [config_dir / path, Path.cwd() / path]
    for base in (own_folder, shipped("policies")):
        if base is not None:
            found += [base / path, base / path.name]
    return list(dict.fromkeys(found))


def find_policy(policy: str, config_dir: Path, own_folder: Path | None = None) -> Path | None:
    """The organisation's policy file, or None when it is nowhere (dsr check says so)."""
    candidates = policy_candidates(policy, config_dir, own_folder)
    return next((p for p in candidates if p.is_file()), None)

"""A wheel is a self-contained product: built from the source, installed into a fresh venv, it
checks, classifies and drafts from an empty folder with the data it carries.

No internet: the fresh venv sees the test venv's installed dependencies through a .pth line
(.pth files inside that folder are not processed, so the editable dsr there stays invisible),
and the wheel is installed with --no-deps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".hypothesis", ".ruff_cache", "tests", "bench",
                              "*.db", "*.db-*", "outbox")

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(180)]


def _run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DSR_", "PYTHON", "VIRTUAL_ENV", "PIP_NO"))}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                            **kwargs)
    assert result.returncode == 0, f"{args}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the source, installed into a new venv."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO_ROOT, source, ignore=SKIP)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(base / "dist"), str(source)], cwd=base)
    wheel = next((base / "dist").glob("dsr-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=base).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], cwd=base)
    return venv


@pytest.fixture
def empty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_the_installed_package_is_the_wheel_not_the_checkout(fresh_venv: Path, empty_folder: Path):
    found = _run([str(fresh_venv / "bin" / "python"), "-c",
                  "import assistant, assistant.resources as r; print(assistant.__file__); "
                  "print(r.shipped('policies'))"], cwd=empty_folder).stdout.split()
    assert Path(found[0]).is_relative_to(fresh_venv)
    assert Path(found[1]).is_relative_to(fresh_venv) and found[1].endswith("assistant/_data/policies")


def test_the_wheel_checks_classifies_and_drafts_from_an_empty_folder(fresh_venv: Path,
                                                                       empty_folder: Path):
    dsr = str(fresh_venv / "bin" / "dsr")
    checked = _run([dsr, "check"], cwd=empty_folder)
    assert "all well" in checked.stdout and "_data/policies/branninfo.md" in checked.stdout

    classified = _run([dsr, "classify", "Jeg vil ha innsyn i mine personopplysninger"],
                      cwd=empty_folder)
    assert "intents: access" in classified.stdout

    opened = _run([dsr, "cases", "new", "--org", "branninfo", "--requester", "a@example.no",
                   "--by", "test", "--text", "Slett alle opplysninger om meg", "--json"],
                  cwd=empty_folder)
    ref = json.loads(opened.stdout)["ref"]
    _run([dsr, "cases", "verify", ref, "--method", "known_channel", "--by", "test"],
         cwd=empty_folder)
    shown = json.loads(_run([dsr, "cases", "show", ref, "--json"], cwd=empty_folder).stdout)
    reply = shown["drafts"][-1]
    assert "erasure" in shown["intents"]
    # The shipped record of processing, read from the wheel: the erasure part names what the
    # record keeps under bokføringsloven § 13 (the checklist is not settled yet).
    assert "bokføringsloven § 13" in reply["body"], reply
    assert "Visma" in reply["body"]
    assert (empty_folder / "dsr.db").exists()

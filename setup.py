"""Build hook: the wheel carries the top-level data folders as package data.

intents/, mail_templates/ and policies/ stay at the top of the repository, where a privacy
officer finds them; a wheel has no "top of the repository", so the build copies them into
``assistant/_data/`` (assistant/resources.py looks there first). An editable install builds
nothing: resources.py then finds the checkout's own folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_FOLDERS = ("intents", "mail_templates", "policies")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class build_py_with_data(build_py):  # noqa: N801 (setuptools command naming)
    """build_py, then the data folders copied into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "assistant" / "_data"
        shutil.rmtree(target, ignore_errors=True)  # a file deleted in the repo must not linger
        for folder in DATA_FOLDERS:
            shutil.copytree(Path(folder), target / folder, ignore=IGNORED)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        target = Path(self.build_lib) / "assistant" / "_data"
        return outputs + [str(p) for p in target.rglob("*") if p.is_file()]


setup(cmdclass={"build_py": build_py_with_data})

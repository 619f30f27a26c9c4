"""`dsr demo` runs the whole pipeline on real local servers and shows each step."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_takes_every_inquiry_from_mail_to_a_threaded_answer(tmp_path):
    result = subprocess.run([sys.executable, "-m", "assistant", "demo"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("<- acknowledgement") == 5
    assert out.count("replies from the same address with the one-time code") == 4
    assert out.count("needs no ID check") == 1  # the newsletter opt-out
    assert out.count("threaded on") == 5 and "last mail: no" not in out
    assert "before any ID check: marketing stopped" in out
    assert "kept under bokføringsloven § 13" in out
    summary = out.split("Cases:")[1].splitlines()
    assert sum(" answered " in line for line in summary) == 5
    assert list(tmp_path.iterdir()) == [], "the demo leaves nothing behind"

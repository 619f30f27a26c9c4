"""Time and memory of `dsr classify --eml`'s path (parse_mail + understand_text) on hostile mail.

Each shape (tests/hostile_shapes.py) runs in its own child process, so its peak memory is the
child's peak resident set (VmHWM, else ru_maxrss: what the kernel saw, not only what Python
allocated, including the interpreter, numpy and the classifier's model): the child imports the
package, warms the classifier on a short text, then times reading the message from a file
the parent wrote, one parse and one classification. Budget (issue 13): 1 s and 256 MB for each shape on one core.

    .venv/bin/python bench/hostile_mail.py            # table
    .venv/bin/python bench/hostile_mail.py --json     # figures as JSON
    .venv/bin/python bench/hostile_mail.py SHAPE ...  # only these shapes
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 1.0
BUDGET_MB = 256.0

CHILD = r"""
import json, resource, sys, time
from assistant.mail.parse import parse_mail
from assistant.understand.pipeline import understand_text
from assistant.config import load_settings

def peak_mb():
    # VmHWM: this process's own peak RSS. ru_maxrss would also count the parent's RSS at fork,
    # which Linux carries across exec.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

conf = load_settings(None)
understand_text("Jeg ber om innsyn.", subject="Innsyn")  # load lexicons and model first
start = time.perf_counter()
with open({path!r}, "rb") as handle:  # as `dsr classify --eml FILE` reads it
    raw = handle.read(conf.smtp.max_message_bytes + 1)
mail = parse_mail(raw)
org = next((o for o in map(conf.organization_for_address, mail.to + mail.cc) if o), None)
result = understand_text(mail.text, subject=mail.subject,
                         default_language=org.language if org else "nb")
seconds = time.perf_counter() - start
print(json.dumps({{"bytes": len(raw), "seconds": seconds,
                  "peak_mb": peak_mb(),
                  "problems": mail.problems, "intents": list(result.intents)}}))
"""


BASELINE = b"From: a@b.no\r\nSubject: x\r\n\r\nHei\r\n"


def run_shape(name: str, folder: Path) -> dict:
    """One shape in a fresh child process, which reads it from a file the parent wrote (so the
    building of the shape does not count in the child's peak); its figures as a dict."""
    from hostile_shapes import SHAPES

    path = folder / f"{name}.eml"
    path.write_bytes(BASELINE if name == "baseline" else SHAPES[name]())
    code = CHILD.format(path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    path.unlink()
    if out.returncode != 0:
        return {"name": name, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["name"] = name
    data["ok"] = data["seconds"] <= BUDGET_SECONDS and data["peak_mb"] <= BUDGET_MB
    return data


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile_shapes import SHAPES

    as_json = "--json" in argv
    names = [a for a in argv if not a.startswith("--")] or ["baseline", *SHAPES]
    with tempfile.TemporaryDirectory() as folder:
        rows = [run_shape(name, Path(folder)) for name in names]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'shape':26} {'input':>10} {'seconds':>8} {'peak MB':>8}  verdict")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:26} {'':>10} {'':>8} {'':>8}  ERROR {row['error']}")
            continue
        size = f"{row['bytes'] / 1e6:.2f} MB" if row["bytes"] >= 10_000 else f"{row['bytes']} B"
        verdict = "OK" if row["ok"] else "OVER BUDGET"
        print(f"{row['name']:26} {size:>10} {row['seconds']:8.3f} {row['peak_mb']:8.1f}  {verdict}")
    over = [r["name"] for r in rows if not r.get("ok")]
    print(f"\nbudget {BUDGET_SECONDS:g} s and {BUDGET_MB:g} MB per shape; "
          + ("all within" if not over else f"over: {', '.join(over)}"))


if __name__ == "__main__":
    main(sys.argv[1:])

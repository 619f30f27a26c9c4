"""`dsr check` and the operator's own data folders, as an operator meets them.

Every problem is one line on stderr, `path:line: what is wrong` (line left out when there is
none, as for the learned model), exit code 2, never a traceback. The operator's folders, named
in the config's [data] table, override the shipped ones file by file.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from assistant import resources
from assistant.cli import cli
from assistant.drafting import DEFAULT_TEMPLATES, OrgInfo, draft_acknowledgement, draft_verification

SHIPPED_INTENTS = resources.shipped("intents")


@pytest.fixture
def operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder with the operator's config file; returns (folder, run(*args, data=...))."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSR_DATABASE__URL", f"sqlite:///{tmp_path / 'dsr.db'}")

    def run(*args: str, config: str = ""):
        (tmp_path / "dsr.toml").write_text(config, encoding="utf-8")
        return CliRunner().invoke(cli, [*args, "--config", str(tmp_path / "dsr.toml")])

    return tmp_path, run


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(result, starts_with: Path | str, *needles: str) -> str:
    """The contract for every data problem: exit 2, one stderr line naming the file."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.stderr and result.exception is None or isinstance(
        result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(str(starts_with)), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


TEMPLATES = '[data]\ntemplates_dir = "ops-templates"\n'
INTENTS = '[data]\nintents_dir = "ops-intents"\n'
POLICIES = '[data]\npolicies_dir = "ops-policies"\n'
ACME = '''[[organizations]]
id = "acme"
name = "Acme AS"
addresses = ["privacy@acme.no"]
policy = "acme.md"
'''
GOOD_POLICY = '''+++
id = "acme"
name = "Acme AS"
source = "handwritten"
language = "nb"
+++

## Sletting
<!-- intents: erasure -->

Vi sletter opplysningene dine når du ber om det.
'''


# --------------------------------------------------------------------------- all well


def test_check_on_the_shipped_data_prints_a_summary(operator):
    _, run = operator
    result = run("check")
    assert result.exit_code == 0, result.output
    # Only the two placeholder addresses (DESIGN.md) are warned about, and not as errors.
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert "personvern@infracomfort.no" in warnings[0] and "personvern@plania.no" in warnings[1]
    out = result.stdout
    assert "all well" in out
    for org in ("branninfo", "infracomfort", "plania", "proffsecurity", "bagges"):
        assert org in out and f"{org}.md" in out
    assert "sections per intent: access 1, erasure 1" in out  # branninfo
    assert "templates: 54 in 3 languages: en, nb, nn" in out  # + escalation, digest (text, HTML)
    assert "languages: ar, cs, da, de" in out and "learned.npz (" in out


def test_an_operator_policy_folder_serves_an_organisation(operator):
    folder, run = operator
    write(folder / "ops-policies" / "acme.md", GOOD_POLICY)
    result = run("check", config=POLICIES + ACME)
    assert result.exit_code == 0, result.output
    assert str(folder / "ops-policies" / "acme.md") in result.stdout


# --------------------------------------------------------------------------- overrides


def test_an_operator_template_overrides_that_template_only(tmp_path):
    org = OrgInfo(id="x", name="X AS", addresses=("p@x.no",), systems=())
    due = date(2026, 3, 2)
    shipped_ack = draft_acknowledgement(org, "DSR-2026-0001", due, "nb", "123", True)
    shipped_ver = draft_verification(org, "DSR-2026-0001", "nb", "123")
    own = tmp_path / "ops-templates"
    write(own / "nb" / "acknowledgement.txt.j2",
          "{% block subject %}Mottatt [{{ ref }}]{% endblock %}\n"
          "{% block body %}Hei fra {{ org.name }}, svar innen {{ due }}.{% endblock %}\n")
    resources.configure(_settings(tmp_path, TEMPLATES))
    ack = draft_acknowledgement(org, "DSR-2026-0001", due, "nb", "123", True)
    assert ack.subject == "Mottatt [DSR-2026-0001]" != shipped_ack.subject
    assert ack.body == "Hei fra X AS, svar innen 2. mars 2026.\n"
    assert draft_verification(org, "DSR-2026-0001", "nb", "123") == shipped_ver
    resources.reset()
    assert draft_acknowledgement(org, "DSR-2026-0001", due, "nb", "123", True) == shipped_ack


def test_an_operator_template_reaches_the_drafts_of_the_cli(operator):
    folder, run = operator
    write(folder / "ops-templates" / "nb" / "opt_out.txt.j2",
          "Vi har stoppet all markedsføring til deg. (Acme-tekst)\n")
    opened = run("cases", "new", "--org", "branninfo", "--requester", "a@example.no",
                 "--intent", "opt_out", "--by", "kari", "--json", config=TEMPLATES)
    assert opened.exit_code == 0, opened.output
    ref = json.loads(opened.stdout)["ref"]
    body = json.loads(run("cases", "show", ref, "--json", config=TEMPLATES).stdout)["drafts"][-1]["body"]
    assert "(Acme-tekst)" in body
    assert "Takk for henvendelsen din til Branninfo AS" in body  # reply.txt.j2 still shipped


def test_an_operator_lexicon_file_changes_classification(operator):
    folder, run = operator
    text = "Hei, hvor er sporfila mi fra zorblat-tjenesten"  # words no shipped reader knows
    assert "intents: access" not in run("classify", text).stdout
    write(folder / "ops-intents" / "local.toml", '[access]\n"sporfila mi" = 1.5\n')
    result = run("classify", text, config=INTENTS)
    assert result.exit_code == 0, result.output
    assert "intents: access" in result.stdout


def test_an_operator_lexicon_replaces_the_shipped_file_of_the_same_name(tmp_path):
    write(tmp_path / "nb.toml", "[access]\n\"x\" = 1\n")
    files = resources.merged_files((tmp_path, SHIPPED_INTENTS), "*.toml")
    assert tmp_path / "nb.toml" in files and SHIPPED_INTENTS / "nb.toml" not in files
    assert SHIPPED_INTENTS / "en.toml" in files
    assert len(files) == len(list(SHIPPED_INTENTS.glob("*.toml")))


def test_a_configured_policy_that_does_not_exist_fails_the_check(operator):
    folder, run = operator
    config = ACME.replace('"acme.md"', '"policies/nope.md"')
    line = one_line_error(run("check", config=config), f"{folder / 'dsr.toml'}:5:",
                          "organizations.acme.policy", "policies/nope.md", "not found")
    assert "Traceback" not in line
    # and every command that drafts refuses the same way, before it does anything
    result = run("cases", "new", "--org", "acme", "--requester", "a@example.no", "--by", "k",
                 "--intent", "opt_out", config=config)
    assert result.stderr == line + "\n" and result.exit_code == 2
    assert not (folder / "dsr.db").exists()


# --------------------------------------------------------------------------- data errors


def test_a_policy_with_bad_front_matter(operator):
    folder, run = operator
    bad = write(folder / "ops-policies" / "acme.md", GOOD_POLICY.replace("+++\n\n##", "\n##"))
    one_line_error(run("check", config=POLICIES + ACME), f"{bad}:1:", "never closed")


def test_a_policy_with_an_unknown_intent_tag(operator):
    folder, run = operator
    bad = write(folder / "ops-policies" / "acme.md", GOOD_POLICY.replace("erasure", "erasur"))
    one_line_error(run("check", config=POLICIES + ACME), f"{bad}:9:", "unknown intent 'erasur'")


def test_a_lexicon_with_bad_toml(operator):
    folder, run = operator
    bad = write(folder / "ops-intents" / "nb.toml", '[access]\n"innsyn" = 1\n"slett = 2\n')
    one_line_error(run("check", config=INTENTS), f"{bad}:3:", "invalid TOML")
    # classify runs the same check and stops with the same line
    one_line_error(run("classify", "innsyn", config=INTENTS), f"{bad}:3:", "invalid TOML")


def test_a_lexicon_with_an_unknown_section_or_an_empty_phrase(operator):
    folder, run = operator
    bad = write(folder / "ops-intents" / "local.toml", '# mine\n\n[acess]\n"innsyn" = 1\n')
    one_line_error(run("check", config=INTENTS), f"{bad}:3:", "unknown section [acess]")
    write(bad, '[access]\n"innsyn" = 1\n"..." = 1\n')
    one_line_error(run("check", config=INTENTS), f"{bad}:3:", "has no word to match")
    write(bad, '[access]\n"innsyn" = "high"\n')
    one_line_error(run("check", config=INTENTS), f"{bad}:2:", "weight must be a number")


def test_a_template_with_a_jinja_syntax_error(operator):
    folder, run = operator
    bad = write(folder / "ops-templates" / "nb" / "unclear.txt.j2",
                "{% block subject %}Hva gjelder det?{% endblock %}\n{% block body %}\n"
                "Hei,\n{% if %}\n{% endblock %}\n")
    one_line_error(run("check", config=TEMPLATES), f"{bad}:4:", "Expected an expression")


def test_a_template_with_an_unknown_variable_fails_the_trial_render(operator):
    folder, run = operator
    bad = write(folder / "ops-templates" / "en" / "extension.txt.j2",
                "{% block subject %}More time{% endblock %}\n{% block body %}\n"
                "Dear {{ requester_nme }},\n{% endblock %}\n")
    one_line_error(run("check", config=TEMPLATES), f"{bad}:3:", "requester_nme")


def test_a_reply_language_missing_a_reply_kind(operator):
    folder, run = operator
    own = folder / "ops-templates" / "de"
    shutil.copy(DEFAULT_TEMPLATES / "en" / "labels.toml", write(own / "labels.toml", ""))
    write(own / "acknowledgement.txt.j2", "{% block subject %}x{% endblock %}{% block body %}y{% endblock %}")
    one_line_error(run("check", config=TEMPLATES), f"{own / 'verification.txt.j2'}:",
                   "missing", "reply.txt.j2")


def test_a_learned_model_of_the_wrong_shape(operator):
    folder, run = operator
    bad = folder / "ops-intents" / "learned.npz"
    bad.parent.mkdir()
    np.savez(bad, vocabulary=np.array(["w:slett", "w:innsyn"]), weights=np.zeros((3, 8)),
             bias=np.zeros(8), intents=np.array(["access", "erasure", "portability", "opt_out",
                                                 "rectification", "restriction", "objection",
                                                 "question"]))
    line = one_line_error(run("check", config=INTENTS), f"{bad}: ", "weights has shape (3, 8)",
                          "expected (2, 8)")
    assert not line.startswith(f"{bad}:1")


def _settings(folder: Path, config: str):
    from assistant.config import load_settings

    return load_settings(write(folder / "dsr.toml", config))

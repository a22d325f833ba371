"""`gdpr-erasure policy check` and `policy show`: OK with the rules, or the one line at fault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.policy_files import edited, line_of, write

from gdpr_erasure.cli import main
from gdpr_erasure.policy import DEFAULT_POLICY_PATH, LIVE_STATE_CASES, OBJECT_KINDS, POLICY_ENV, load_policy

BROKEN = edited("review_after: P60D", "review_after: 60 days")


@pytest.fixture
def no_policy_configured(monkeypatch):
    monkeypatch.delenv(POLICY_ENV, raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_GDPR_ERASURE_POLICY", raising=False)


def test_check_prints_ok_the_digest_and_each_rule(no_policy_configured, capsys):
    assert main(["policy", "check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"policy OK: {DEFAULT_POLICY_PATH} ({load_policy().digest})"
    assert out[1].split() == ["rule", "action", "kept", "for", "review", "after", "legal", "basis"]
    rows = {line.split()[0]: line.split()[1:] for line in out[2:]}
    assert list(rows) == [f"objects.{k}" for k in OBJECT_KINDS] + [
        f"live_state.{c}" for c in LIVE_STATE_CASES
    ]
    assert rows["objects.stripe.customer"] == ["erase"]
    assert rows["live_state.open_invoice"][:4] == ["redact", "P10Y", "Art.", "17(3)(b)"]
    assert rows["live_state.open_dispute"][:4] == ["withhold", "P60D", "Art.", "17(3)(e)"]


def test_check_reads_the_configured_policy_or_the_file_given(
    no_policy_configured, tmp_path, monkeypatch, capsys
):
    configured = write(tmp_path, edited("retain_for: P10Y", "retain_for: P8Y"), "configured.yaml")
    monkeypatch.setenv(POLICY_ENV, str(configured))
    assert main(["policy", "check"]) == 0
    assert capsys.readouterr().out.startswith(f"policy OK: {configured} (sha256:")
    assert main(["policy", "check", str(DEFAULT_POLICY_PATH)]) == 0
    assert capsys.readouterr().out.startswith(f"policy OK: {DEFAULT_POLICY_PATH} (sha256:")


def test_check_of_a_broken_policy_is_its_line_and_exit_1(tmp_path, capsys):
    path = write(tmp_path, BROKEN)
    assert main(["policy", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{path}:{line_of(BROKEN, '60 days')}: live_state.open_dispute.review_after: '60 days' is not an ISO "
        "8601 duration: write an ISO 8601 duration of a day or more, e.g. P30D, P6M, P10Y or P1Y6M\n"
    )


def test_check_refuses_a_policy_keeping_what_only_the_stripe_step_could_keep(tmp_path, capsys):
    """Such a policy used to pass the check while the Twilio step erased the profile anyway."""
    text = edited(
        "  twilio.memory_profile:\n    action: erase",
        "  twilio.memory_profile:\n    action: retain\n"
        "    legal_basis: Art. 17(3)(b) GDPR\n    retain_for: P1Y",
    )
    path = write(tmp_path, text)
    assert main(["policy", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        f"{path}:{line_of(text, 'action: retain')}: objects.twilio.memory_profile.action: keeping "
        "twilio.memory_profile (retain) is not supported yet"
    )
    assert "write `action: erase`" in captured.err
    assert len(captured.err.splitlines()) == 1


def test_show_prints_the_effective_policy_as_json(no_policy_configured, capsys, tmp_path):
    assert main(["policy", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == load_policy().as_dict()
    assert main(["policy", "show", str(write(tmp_path, BROKEN))]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_the_console_command_outside_airflow(tmp_path):
    """A real process with no Airflow set up (an empty home, no database): the Variable cannot be
    there, so the environment and then the default decide, and errors are one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GDPR_"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow")
    command = [str(Path(sys.executable).parent / "gdpr-erasure"), "policy", "check"]
    ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.startswith(f"policy OK: {DEFAULT_POLICY_PATH} (sha256:")

    env[POLICY_ENV] = str(write(tmp_path, BROKEN))
    bad = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"{env[POLICY_ENV]}:{line_of(BROKEN, '60 days')}: ")
    assert len(bad.stderr.strip().splitlines()) == 1

"""Every error a person sees from `gdpr-erasure` is one line and a non-zero exit, never a traceback.

Every command the parser knows is run with nothing set up (no store, no connections, an
empty Airflow home): each must fail in one line, or succeed. New commands are picked up from the
parser, so a new one cannot skip this.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gdpr_erasure.cli import build_parser, explain, main

# Long-running servers, and commands that succeed on their own without any setup.
NOT_HERE = {"sandbox serve", "intake serve", "intake openapi"}
# Dummy values for required arguments.
VALUES = {"role": "gdpr_pipeline", "request_ids": "req-1", "request_id": "req-1", "file": "missing.json"}


def _commands() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
                return
        argv = list(words)
        for action in parser._actions:
            if action.option_strings and action.required:
                argv += [action.option_strings[0], "missing.pem"]
            elif not action.option_strings and action.dest != "help":
                argv.append(VALUES.get(action.dest, "x"))
        if " ".join(words) not in NOT_HERE:
            found.append(argv)

    walk(build_parser(), [])
    return found


@pytest.fixture
def nothing_set_up(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("AIRFLOW_CONN_", "GDPR_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GDPR_COMPLIANCE_DB_URL", f"sqlite:///{tmp_path / 'nowhere' / 'compliance.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv", _commands(), ids=lambda argv: " ".join(argv))
def test_each_command_fails_in_one_line_without_setup(argv, nothing_set_up, capsys):
    try:
        code = main(argv)
        err = capsys.readouterr().err
    except SystemExit as exc:  # the interpreter prints a SystemExit's text as one line, exit 1
        err = capsys.readouterr().err + (f"{exc.code}\n" if isinstance(exc.code, str) else "")
        code = 1 if isinstance(exc.code, str) else exc.code
    assert "Traceback" not in err
    if code:
        assert len(err.strip().splitlines()) == 1, err
    if argv[:2] != ["db", "init"]:  # the one command that creates a store
        assert not (nothing_set_up / "nowhere").exists()


@pytest.mark.parametrize(
    "argv", [["receipt", "public-key"], ["pools", "create"]], ids=lambda argv: " ".join(argv)
)
def test_the_console_command_explains_what_used_to_be_a_traceback(argv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GDPR_"))}
    env["AIRFLOW_HOME"] = str(tmp_path)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gdpr-erasure"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"gdpr-erasure {' '.join(argv)}: ")


def test_explain_scrubs_identifiers_and_says_what_to_do():
    line = explain(ValueError("customer a.person@example.org (+44 20 7946 0958) cus_N3bG5k2LmQ"))
    assert "example.org" not in line and "7946" not in line and "cus_N3b" not in line
    assert "GDPR_ERASURE_DEBUG=1" in line
    failed = subprocess.CalledProcessError(
        1, ["airflow", "pools", "import", "f.json"], stderr="boom\nnot ready\n"
    )
    assert explain(failed).startswith("airflow pools import f.json ... exited with status 1: not ready")

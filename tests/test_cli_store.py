"""Reading commands never create a store: a missing or empty one is one clear line and exit 2,
never a traceback and never a new empty store in Airflow's default place."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gdpr_erasure.cli import main

READING = [
    ["db", "status"],
    ["requests", "list"],
    ["audit", "verify"],
    ["audit", "head"],
    ["audit", "export"],
    ["receipt", "issue", "req-1"],
]


@pytest.mark.parametrize("command", READING, ids=lambda c: " ".join(c))
def test_a_missing_store_is_one_line_and_exit_2(command, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'nowhere' / 'compliance.db'}"
    assert main([command[0], "--db-url", url, *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no compliance store at" in err and "--db-url" in err and "GDPR_COMPLIANCE_DB_URL" in err
    assert not (tmp_path / "nowhere").exists()


def test_an_empty_database_is_not_a_store(tmp_path, capsys):
    (tmp_path / "empty.db").touch()
    assert main(["audit", "--db-url", f"sqlite:///{tmp_path / 'empty.db'}", "verify"]) == 2
    assert "no compliance store at" in capsys.readouterr().err


def test_the_console_command_prints_no_traceback(tmp_path):
    env = {**os.environ, "GDPR_COMPLIANCE_DB_URL": f"sqlite:///{tmp_path / 'missing.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("gdpr-erasure: no compliance store at sqlite:///")
    assert not (tmp_path / "missing.db").exists()

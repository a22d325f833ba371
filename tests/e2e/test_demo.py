"""`make demo` ends by printing the commands that inspect what it did; pasted into a fresh shell
(no Airflow or pipeline settings in the environment), each of them works."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


@pytest.mark.timeout(600)
def test_the_demo_succeeds_and_its_printed_commands_work_when_pasted(tmp_path):
    demo = subprocess.run(
        [sys.executable, "-m", "devstack.demo"], cwd=tmp_path, capture_output=True, text=True, timeout=540
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "[demo] SUCCESS" in demo.stdout
    printed = [
        line.strip()
        for line in demo.stdout.splitlines()
        if line.strip().startswith(".venv/bin/gdpr-erasure ")
    ]
    verbs = [" ".join(shlex.split(line)[1:3]) for line in printed]
    assert verbs == ["requests show", "audit verify", "audit export", "receipt verify"], printed

    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GDPR_"))}
    for line in printed:
        argv = shlex.split(line)
        result = subprocess.run(
            [str(VENV_BIN / "gdpr-erasure"), *argv[1:]],
            cwd=tmp_path,
            env=shell,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout[-1000:]}{result.stderr[-1000:]}"
        assert "Traceback" not in result.stderr

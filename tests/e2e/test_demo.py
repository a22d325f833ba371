"""`make demo` ends by printing the commands that inspect what it did; pasted into a fresh shell
(no Airflow or pipeline settings in the environment), each of them works. Besides the people it
erases, one request is on a legal hold (nothing written) and one is completed with an exemption
(the open dispute's Stripe customer withheld, the rest erased): the summary and the commands
show both."""

from __future__ import annotations

import json
import os
import re
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
    assert verbs == [
        "requests show",
        "requests show",
        "requests show",
        "hold list",
        "audit verify",
        "audit export",
        "audit export",
        "receipt verify",
        "receipt verify",
    ], printed

    # The summary: the held request and the one completed with an exemption, and why.
    out = demo.stdout
    assert re.search(r"^demo-open_dispute +completed_with_exemptions +0 delete, 1 kept ", out, re.M), out
    assert re.search(r"^demo-person-004 +on_hold ", out, re.M), out
    kept = re.search(
        r"^demo-open_dispute: kept Stripe customer (cus#[0-9a-f]{12}), withhold \(open_dispute\): "
        r"Art\. 17\(3\)\(e\) GDPR .*; checked again on \d{4}-\d{2}-\d{2}$",
        out,
        re.M,
    )
    assert kept, out
    hold = re.search(r"^demo-person-004: on_hold \(on hold: (hold-[0-9a-f]+)\): nothing written; ", out, re.M)
    assert hold, out
    assert re.search(r"\[demo\] legal hold hold-[0-9a-f]+ placed on demo-person-004 ", out)
    assert "open_dispute's disputed Stripe customer received no write" in out
    assert "cus_" not in out  # Stripe customers by their tag only

    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GDPR_"))}
    outputs = {}
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
        outputs[" ".join(argv[1:])] = result.stdout

    def shown(start: str, *, ending: str = "") -> str:
        """The output of the one printed command starting with ``start`` (and ending with ``ending``)."""
        [found] = [
            text
            for command, text in outputs.items()
            if command.startswith(start) and command.endswith(ending)
        ]
        return found

    # What each of those commands shows of the two.
    exempted = shown("requests show demo-open_dispute")
    assert exempted.startswith("request demo-open_dispute: completed_with_exemptions")
    assert kept.group(1) in exempted and "withhold" in exempted and "open_dispute" in exempted
    assert "Completed: completed_with_exemptions" in exempted
    held = shown("requests show demo-person-004")
    assert held.startswith("request demo-person-004: on_hold")
    assert f"On legal hold: on_hold  (on hold: {hold.group(1)})" in held
    assert "not hashed yet" in held
    listed = shown("hold list")
    assert re.search(rf"^{hold.group(1)} +active +demo-person-004 +- +1 ", listed, re.M), listed
    assert "reason: DEMO-1 litigation hold" in listed
    report = json.loads(shown("audit export", ending="--summary"))
    assert (report["completed"], report["completed_with_exemptions"], report["on_hold"]) == (8, 1, 1)
    assert (report["failed"], report["needs_attention"], report["open_and_overdue"]) == (0, 0, 0)
    assert report["kept_by_action"]["withhold"] == 1
    assert [r["request_id"] for r in report["next_reviews"]] == ["demo-open_dispute"]
    assert kept.group(1) in shown("receipt verify .demo/receipts/demo-open_dispute")
    assert report["on_hold_requests"] == [
        {"request_id": "demo-person-004", "reason": f"on hold: {hold.group(1)}"}
    ]

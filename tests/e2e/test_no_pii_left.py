"""After a real end-to-end run, no file the run wrote holds any requester's email, phone or Stripe
``cus_`` id.

The stack runs as in production, in separate processes: ``airflow dags test`` (scheduler loop,
tasks and triggers with their logs), the compliance store, the sandbox. Then every file under
the stack's directory is searched byte by byte: task logs, Airflow's metadata DB, the
compliance DB with its WAL, the sandbox's log.
"""

from __future__ import annotations

from pathlib import Path

from e2e_support import PEOPLE, forms


def test_the_run_completed(finished_stack):
    assert finished_stack.code == 0
    assert finished_stack.counts == {"completed": len(PEOPLE)}


def test_no_identifier_in_any_file_the_run_wrote(finished_stack):
    root, identifiers = finished_stack.root, finished_stack.identifiers
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"airflow.db", "compliance.db", "dag-run.log", "sandbox.log"} <= names  # we did look
    assert sum(p.stat().st_size for p in files) > 100_000
    task_logs = (Path(root) / "dag-run.log").read_bytes()
    assert b"req-many_messages" in task_logs  # the tasks' own log lines are in what we scan
    assert b"erase_twilio_history: req-many_messages" in task_logs  # its log group
    needles = {
        form.encode(): key for key, values in identifiers.items() for value in values for form in forms(value)
    }
    leaks = []
    for path in files:
        data = path.read_bytes()
        leaks += [f"{path.relative_to(root)}: {needles[n]}" for n in needles if n in data]
    assert leaks == []


def test_the_scan_would_see_an_identifier(tmp_path):
    """The detector itself: an identifier written in any of its forms is found."""
    email = "Jane.Doe+x@Example.com"
    assert {"jane.doe+x@example.com", "JANE.DOE+X@EXAMPLE.COM", "Jane.Doe%2Bx%40Example.com"} <= forms(email)
    assert {"+14155550100", "14155550100", "%2B14155550100"} <= forms("+14155550100")

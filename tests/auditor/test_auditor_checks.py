"""What the auditor page computes over the whole ledger is computed once and shared: the audit
chain's check runs in the background and is repeated when the ledger grows or the result is
old; a period's figures and charts are reused until the ledger grows."""

from __future__ import annotations

import threading
import time

from auditor.auditor_support import november, seed_request

from gdpr_erasure.auditor.checks import ChainCheck, PeriodCache
from gdpr_erasure.auditor.pages import chain_banner
from gdpr_erasure.hashing import load_hash_key
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import ChainReport, ComplianceStore


class SlowLedger:
    """A store whose chain check waits until the test lets it finish."""

    def __init__(self) -> None:
        self.tip: tuple[int, str] | None = (3, "c" * 64)
        self.release = threading.Event()
        self.checks = 0
        self.fail = False

    def audit_tip(self):
        return self.tip

    def verify_audit_chain(self) -> ChainReport:
        self.checks += 1
        self.release.wait(10)
        if self.fail:
            raise ConnectionError("the database went away")
        return ChainReport(checked=self.tip[0], head_hash=self.tip[1])


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_slow_check_runs_in_the_background_and_is_shared():
    ledger = SlowLedger()
    check = ChainCheck(lambda: ledger, wait=0.05)
    first = check.state()
    assert first.report is None and first.running
    assert "Checking the audit chain (3 record(s))" in chain_banner(first)
    assert check.state().running and ledger.checks == 1  # the same check, not a second one
    ledger.release.set()
    wait_until(lambda: not check.state().running)
    done = check.state()
    assert done.report.ok and done.current and done.checked_at is not None
    assert "Audit chain intact: 3 record(s)" in chain_banner(done)
    assert ledger.checks == 1  # fresh: reused


def test_the_chain_is_checked_again_when_the_ledger_grows_or_the_result_is_old():
    ledger = SlowLedger()
    ledger.release.set()
    check = ChainCheck(lambda: ledger, wait=2.0, max_age=60.0)
    assert check.state().report.checked == 3
    ledger.release.clear()
    ledger.tip = (4, "d" * 64)
    check.wait = 0.05
    growing = check.state()
    assert not growing.current and growing.running and growing.report.checked == 3
    assert "the ledger has grown to 4 record(s) since, and is being checked" in chain_banner(growing)
    ledger.release.set()
    wait_until(lambda: check.state().current)
    assert check.state().report.checked == 4 and ledger.checks == 2
    check.max_age = 0.0  # an old result: checked again although the ledger did not grow
    check.wait = 2.0
    check.state()
    assert ledger.checks == 3


def test_a_check_that_cannot_run_says_so():
    ledger = SlowLedger()
    ledger.fail = True
    ledger.release.set()
    state = ChainCheck(lambda: ledger, wait=2.0).state()
    assert state.report is None and state.error == "ConnectionError"
    assert "could not be checked (ConnectionError)" in chain_banner(state)


def test_a_period_s_figures_are_reused_until_the_ledger_grows(tmp_path):
    store = ComplianceStore.from_url(f"sqlite:///{tmp_path / 'compliance.db'}")
    store.init_db()
    key = load_hash_key()
    one, two = (SubjectIdentifiers.parse(email=f"{n}@example.com") for n in ("one", "two"))
    seed_request(store, key, "req-1", one, received_at=november(2))
    periods = PeriodCache(lambda: store)
    view = periods.view(None, None)
    assert view.summary["completed"] == 1
    assert "0 of 1 request(s) (0.0%) took longer than 30 days" in view.deadline_sentence
    assert periods.view(None, None) is view  # the same ledger: reused
    seed_request(store, key, "req-2", two, received_at=november(3))
    assert periods.view(None, None).summary["completed"] == 2
    store.dispose()

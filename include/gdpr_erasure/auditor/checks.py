"""What the auditor page computes over the whole ledger, computed once and shared by its requests.

The audit chain's check reads and hashes every record (about 4 to 7 s for 100,000 on SQLite
here), and a period's figures and charts read and draw the times of every record in it (about
0.7 s). The
records list pages by keyset and costs a millisecond, so without this every page turn would
pay for both. Both are kept per API server process and recomputed when the ledger grows (its
newest record changes) or when they are older than ``max_age`` seconds, so an edit that leaves
the newest record alone (an attack on an old record) shows within that time.

The chain check runs in a background thread: a request waits for it up to ``wait`` seconds (a
small ledger is checked within that), then the page says the check is running and shows the
previous result, if any, with its time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gdpr_erasure.auditor import charts
from gdpr_erasure.ledger.export import completions_between, completions_per_week, period_figures
from gdpr_erasure.store import ChainReport, ComplianceStore

Tip = tuple[int, str] | None


@dataclass(frozen=True)
class ChainState:
    """The latest finished check of the audit chain, and whether it covers the ledger as it is.

    :param report: the check's result; None before the first check has finished (or if it failed).
    :param checked_at: when that check finished.
    :param current: the check covered the ledger's current newest record.
    :param running: a check is running now.
    :param error: why the last check could not run (the exception's type only).
    :param records: the ledger's size now (from its newest ``seq``).
    """

    report: ChainReport | None
    checked_at: datetime | None
    current: bool
    running: bool
    error: str | None
    records: int


class ChainCheck:
    """:meth:`ComplianceStore.verify_audit_chain`, shared and refreshed as the module says.

    :param store: gives the store (the app opens it lazily).
    :param max_age: seconds after which a finished check is repeated.
    :param wait: seconds a request waits for a running check before answering without it.
    """

    def __init__(
        self, store: Callable[[], ComplianceStore], *, max_age: float = 60.0, wait: float = 2.0
    ) -> None:
        self._store = store
        self.max_age = max_age
        self.wait = wait
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._report: ChainReport | None = None
        self._tip: Tip = None
        self._finished: float | None = None  # time.monotonic() of the last finished check
        self._checked_at: datetime | None = None
        self._error: str | None = None

    def state(self) -> ChainState:
        tip = self._store().audit_tip()
        with self._lock:
            fresh = (
                self._finished is not None
                and self._tip == tip
                and time.monotonic() - self._finished < self.max_age
            )
            if not fresh and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(tip,), name="gdpr-audit-chain-check", daemon=True
                )
                self._thread.start()
            thread = self._thread
        if thread is not None:
            thread.join(self.wait)
        with self._lock:
            return ChainState(
                report=self._report,
                checked_at=self._checked_at,
                current=self._finished is not None and self._tip == tip,
                running=self._thread is not None,
                error=self._error,
                records=tip[0] if tip else 0,
            )

    def _run(self, tip: Tip) -> None:
        report, error = None, None
        try:
            report = self._store().verify_audit_chain()
        except Exception as exc:  # the store is unreachable: say so on the page, retry next time
            error = type(exc).__name__
        with self._lock:
            if report is not None:
                self._report = report
            self._error = error
            self._tip = tip
            self._finished = time.monotonic()
            self._checked_at = datetime.now(UTC)
            self._thread = None


@dataclass(frozen=True)
class PeriodView:
    """What the page shows of a period besides its records: the figures
    (:func:`~gdpr_erasure.ledger.export.period_figures`) and the two charts, drawn."""

    summary: dict[str, Any]
    weekly_svg: str
    deadline_svg: str
    deadline_sentence: str


class PeriodCache:
    """Each period's :class:`PeriodView`, per period and ledger tip, for ``max_age`` seconds:
    the figures and charts read every record's times and draw them (about 0.7 s for 100,000),
    the records page itself a millisecond.

    :param store: gives the store.
    :param max_age: seconds a period's view is reused while the ledger has not grown.
    :param size: periods kept (the least recently used goes first).
    """

    def __init__(
        self, store: Callable[[], ComplianceStore], *, max_age: float = 60.0, size: int = 16
    ) -> None:
        self._store = store
        self.max_age = max_age
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Any, ...], tuple[float, PeriodView]] = OrderedDict()

    def view(self, since: datetime | None, until: datetime | None) -> PeriodView:
        """The view of the records written in ``[since, until)``."""
        store = self._store()
        key = (since, until, store.audit_tip())
        now = time.monotonic()
        with self._lock:
            item = self._items.get(key)
            if item is not None and now - item[0] < self.max_age:
                self._items.move_to_end(key)
                return item[1]
        completions = completions_between(store, since, until)
        deadline_svg, sentence = charts.deadline_chart(completions)
        view = PeriodView(
            summary=period_figures(store, since, until, completions),
            weekly_svg=charts.weekly_chart(completions_per_week(completions)),
            deadline_svg=deadline_svg,
            deadline_sentence=sentence,
        )
        with self._lock:
            self._items[key] = (now, view)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return view

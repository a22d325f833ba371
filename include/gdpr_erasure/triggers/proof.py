"""The one trigger: :class:`DeletionProofTrigger` proves the deletions of a whole batch of requests.

A sensor task works on a batch of requests; rather than one trigger per request, it defers to
this trigger, which polls a provider check per request (:mod:`gdpr_erasure.proofs`), those
still open, a few at a time, until every request has an answer or the deadline passes. One
event then reports each request's outcome.

A trigger's kwargs are stored in Airflow's metadata DB (the ``trigger`` table) while it waits,
and Stripe ``cus_`` ids are identifiers there. So the trigger carries only request ids, the
erasure step, connection ids and timings; it reads what the checks poll (customer, profile and
regulation ids) from the compliance store by request id when it runs, in the triggerer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

# Triggers have no airflow.sdk home in Airflow 3.3; providers import them from here too.
from airflow.triggers.base import BaseTrigger, TriggerEvent

from gdpr_erasure import steps
from gdpr_erasure.hashing import StripeTagger
from gdpr_erasure.proofs import PROOF_CHECKS, proof_check
from gdpr_erasure.proofs.base import ProofCheck
from gdpr_erasure.store import ComplianceStore, StoreError
from gdpr_erasure.store.engine import DEFAULT_CONN_ID, resolve_db_url


class DeletionProofTrigger(BaseTrigger):
    """Poll the provider check of each request until each is settled.

    Each request ends ``done``, ``failed`` (the provider reported the deletion failed),
    ``error`` (the check kept failing after the hook's retries, or the store holds nothing to
    prove) or, when ``deadline`` passes first, ``pending`` (handed over to a later run). The
    event is :class:`~gdpr_erasure.steps.ProofEvent`: ``{"status": "settled", "outcomes":
    {request_id: {"state", "evidence"}}, "polls": n}``, or ``{"status": "error", "message"}``
    when the compliance store cannot be read.

    :param request_ids: the requests whose deletion to prove.
    :param erasure_step: the erasure step that deleted (names the check, and where its ids are
        stored).
    :param conn_id: the provider connection the checks use.
    :param poll_interval: seconds between rounds of checks.
    :param deadline: epoch seconds after which open requests are reported ``pending``.
    :param max_concurrency: checks running at the same time (each in a thread).
    :param compliance_conn_id: connection of the compliance store (``$GDPR_COMPLIANCE_DB_URL``
        wins, as everywhere).
    """

    def __init__(
        self,
        request_ids: list[str],
        erasure_step: str,
        conn_id: str,
        poll_interval: float,
        deadline: float | None = None,
        max_concurrency: int = 8,
        compliance_conn_id: str = DEFAULT_CONN_ID,
    ) -> None:
        super().__init__()
        if erasure_step not in PROOF_CHECKS:
            raise ValueError(f"no proof check for step {erasure_step!r}")
        self.request_ids = list(request_ids)
        self.erasure_step = erasure_step
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_concurrency = max_concurrency
        self.compliance_conn_id = compliance_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_ids": self.request_ids,
                "erasure_step": self.erasure_step,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_concurrency": self.max_concurrency,
                "compliance_conn_id": self.compliance_conn_id,
            },
        )

    def load_checks(self) -> dict[str, ProofCheck | None]:
        """Each request's check, built from its erasure step in the compliance store (blocking:
        the trigger calls it in a thread). None where the store holds nothing to prove."""
        store = ComplianceStore.open_existing(resolve_db_url(conn_id=self.compliance_conn_id), pre_ping=False)
        tag = StripeTagger()  # one key lookup for the batch, and only if a Stripe check names one
        try:
            checks: dict[str, ProofCheck | None] = {}
            for rid in self.request_ids:
                erasure = store.steps(rid).get(self.erasure_step)
                checks[rid] = (
                    proof_check(self.erasure_step, erasure.result, self.conn_id, tag) if erasure else None
                )
            return checks
        finally:
            store.dispose()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            checks = await asyncio.to_thread(self.load_checks)
        except Exception as exc:
            # A StoreError says where it looked (no password); a driver's error may quote more.
            detail = f": {exc}" if isinstance(exc, StoreError) else ""
            yield TriggerEvent(
                steps.ProofEvent(
                    status="error", message=f"cannot read the compliance store ({type(exc).__name__}){detail}"
                )
            )
            return
        outcomes: dict[str, steps.ProofOutcome] = {
            rid: steps.ProofOutcome(
                state="error", evidence={"reason": f"no {self.erasure_step} result to prove in the store"}
            )
            for rid, check in checks.items()
            if check is None
        }
        limit = asyncio.Semaphore(self.max_concurrency)
        last: dict[str, dict[str, Any]] = {}
        polls = 0
        while True:
            polls += 1
            open_ids = [rid for rid in checks if rid not in outcomes]
            answers = await asyncio.gather(*(self._check(limit, checks[rid]) for rid in open_ids))
            for rid, (state, evidence) in zip(open_ids, answers, strict=True):
                if state == "waiting":
                    last[rid] = evidence
                else:
                    outcomes[rid] = steps.ProofOutcome(state=state, evidence=evidence)
            still_open = [rid for rid in checks if rid not in outcomes]
            if not still_open:
                break
            if self.deadline is not None and time.time() + self.poll_interval > self.deadline:
                for rid in still_open:
                    outcomes[rid] = steps.ProofOutcome(state="pending", evidence=last.get(rid, {}))
                break
            self.log.info(
                "check %d: %d of %d proven or settled; %d still open",
                polls,
                len(outcomes),
                len(checks),
                len(still_open),
            )
            await asyncio.sleep(self.poll_interval)
        yield TriggerEvent(steps.ProofEvent(status="settled", outcomes=outcomes, polls=polls))

    @staticmethod
    async def _check(limit: asyncio.Semaphore, check: ProofCheck) -> tuple[steps.ProofState, dict[str, Any]]:
        async with limit:
            try:
                return await asyncio.to_thread(check.check)
            except Exception as exc:  # hook errors are already scrubbed of identifiers
                return "error", {"reason": f"{type(exc).__name__}: {exc}"}

"""The one trigger: :class:`DeletionProofTrigger` proves the deletions of a whole batch of requests.

A sensor task works on a batch of requests; rather than one trigger per request, it defers to
this trigger, which polls a provider check per request (:mod:`gdpr_erasure.proofs`), those
still open, a few at a time, until every request has an answer or the deadline passes. One
event then reports each request's outcome.

A trigger's kwargs are stored in Airflow's metadata DB (the ``trigger`` table) while it waits,
and Stripe ``cus_`` ids are identifiers there. So the trigger carries only request ids, the
erasure step, connection ids and timings; it reads what the checks poll (customer, profile and
regulation ids) from the compliance store by request id when it runs, in the triggerer.

Its lines reach the deferred task instance's log (the triggerer forwards them). Each request gets
a log group of its own when it settles, titled with the erasure step, the request and its state,
its lines marked ``[request_id]`` like the sensors' (:class:`gdpr_erasure.batch.RequestLog`); a
request still open is named once, on the first round, with what it waits for. The checks run
concurrently but the trigger logs between rounds, one request at a time, so each group is whole.
Evidence is logged as the event carries it: ids, tags and states, never an identifier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

# Triggers have no airflow.sdk home in Airflow 3.3; providers import them from here too.
from airflow.triggers.base import BaseTrigger, TriggerEvent

from gdpr_erasure import steps
from gdpr_erasure.batch import log_group
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
        outcomes: dict[str, steps.ProofOutcome] = {}
        for rid, check in checks.items():
            if check is None:
                evidence = {"reason": f"no {self.erasure_step} result to prove in the store"}
                self._settled(outcomes, rid, "error", evidence, 0)
        limit = asyncio.Semaphore(self.max_concurrency)
        last: dict[str, dict[str, Any]] = {}
        polls = 0
        while True:
            polls += 1
            open_ids = [rid for rid in checks if rid not in outcomes]
            answers = await asyncio.gather(*(self._check(limit, checks[rid]) for rid in open_ids))
            for rid, (state, evidence) in zip(open_ids, answers, strict=True):
                if state != "waiting":
                    self._settled(outcomes, rid, state, evidence, polls)
                    continue
                if rid not in last:  # named once, not every round
                    summary = evidence.get("summary") or evidence.get("status") or "no answer yet"
                    self.log.info(
                        "[%s] not proven yet (%s): checking every %ss", rid, summary, self.poll_interval
                    )
                last[rid] = evidence
            still_open = [rid for rid in checks if rid not in outcomes]
            if not still_open:
                break
            if self.deadline is not None and time.time() + self.poll_interval > self.deadline:
                for rid in still_open:
                    self._settled(outcomes, rid, "pending", last.get(rid, {}), polls)
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

    def _settled(
        self,
        outcomes: dict[str, steps.ProofOutcome],
        request_id: str,
        state: steps.ProofState,
        evidence: dict[str, Any],
        polls: int,
    ) -> None:
        """Settle one request: its outcome for the event, and its log group, written whole."""
        outcomes[request_id] = steps.ProofOutcome(state=state, evidence=evidence)
        with log_group(self.log, f"proof of {self.erasure_step}: {request_id} ({state})"):
            if state == "done":
                self.log.info("[%s] proven after %d check(s): %s", request_id, polls, evidence)
            elif state == "pending":
                self.log.info(
                    "[%s] still not proven at the deadline, after %d check(s) (%s): a later run checks again",
                    request_id,
                    polls,
                    evidence.get("summary") or evidence.get("status"),
                )
            else:  # failed, or error: the check itself kept failing
                self.log.warning(
                    "[%s] %s after %d check(s): %s",
                    request_id,
                    state,
                    polls,
                    evidence.get("reason", evidence),
                )

    @staticmethod
    async def _check(limit: asyncio.Semaphore, check: ProofCheck) -> tuple[steps.ProofState, dict[str, Any]]:
        async with limit:
            try:
                return await asyncio.to_thread(check.check)
            except Exception as exc:  # hook errors are already scrubbed of identifiers
                return "error", {"reason": f"{type(exc).__name__}: {exc}"}

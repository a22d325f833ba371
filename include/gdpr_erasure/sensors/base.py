"""Sensors that prove a deletion, deferring to the one proof trigger so no worker slot waits."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, conf
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from gdpr_erasure import steps
from gdpr_erasure.batch import (
    DEFAULT_CONCURRENCY,
    ComplianceStoreMixin,
    RequestLog,
    as_request_ids,
    is_dry_run,
    run_batch,
    task_try,
    will_retry,
)
from gdpr_erasure.hashing import StripeTagger
from gdpr_erasure.proofs import proof_check
from gdpr_erasure.proofs.base import ProofCheck
from gdpr_erasure.store import StepStatus, TaskTry
from gdpr_erasure.store.engine import DEFAULT_CONN_ID
from gdpr_erasure.triggers.proof import DeletionProofTrigger


class DeletionProofSensor(ComplianceStoreMixin, BaseSensorOperator):
    """Wait until a provider proves an erasure step's deletion for each request of a batch, then
    record the proof per request.

    Subclasses say which erasure step they verify (:attr:`erasure_step`), under which step name the
    proof is stored (:attr:`verify_step`), which provider connection the check uses
    (:attr:`provider_conn_id`) and which check sets the default poll interval
    (:attr:`check_class`). Each request is checked once right away (often the deletion is
    already proven and nothing waits); the rest wait together in one :class:`DeletionProofTrigger`
    in the triggerer (deferrable), or are poked on a worker otherwise. The trigger is given
    request ids only and reads the ids to poll from the compliance store.

    A provider that reports the deletion failed fails only that request (``write_ledger_record`` marks
    it failed); checks that keep erroring make the task retry while retries remain. Each proof is
    recorded with the task instance and try that settled it (after a deferral: the one resumed).
    Each request logs as the operators' requests do (:class:`~gdpr_erasure.batch.RequestLog`):
    its lines marked ``[request_id]`` as they happen, then one log group per request titled with
    the task, the request and where its proof stands; the trigger logs each request's outcome in
    a group of its own in between.

    :param request_ids: the batch of erasure requests (templated).
    :param deferrable: wait in the triggerer instead of on a worker. The default follows
        ``[operators] default_deferrable``, as the providers' operators do; Airflow ships it
        ``false``, so the DAG asks for ``True`` itself.
    :param poll_interval: seconds between provider checks; default: the check's entry in
        :data:`gdpr_erasure.proofs.base.POLL_SECONDS`.
    :param patience: seconds to wait in this run before handing a request over to a later run
        (status ``verifying``) instead of failing; None waits until ``timeout`` and then fails.
        For providers that are slow by design (a Segment regulation can take days).
    :param max_concurrency: provider checks running at the same time.
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("request_ids",)
    erasure_step: str
    verify_step: str
    #: The check this sensor mostly runs: its poll interval is the default.
    check_class: type[ProofCheck]
    ui_color = "#fff8e1"

    def __init__(
        self,
        *,
        request_ids: list[str] | str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=True),
        poll_interval: float | None = None,
        patience: float | None = None,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        if poll_interval is None:
            poll_interval = self.check_class.poll_seconds()
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.request_ids = request_ids
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.patience = patience
        self.max_concurrency = max_concurrency
        self.compliance_conn_id = compliance_conn_id
        self._tag = StripeTagger()  # names Stripe customers in proofs and logs

    @property
    def provider_conn_id(self) -> str:  # pragma: no cover - abstract
        """The connection the provider check uses."""
        raise NotImplementedError

    # -- flow --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        ids = as_request_ids(self.request_ids)
        if is_dry_run(context):
            raise AirflowSkipException(f"dry run: nothing was deleted for {len(ids)} request(s)")
        ran_in = task_try(context)
        answers = run_batch(ids, lambda rid: self._first_check(rid, ran_in), self.max_concurrency)
        waiting = [rid for rid, waits in zip(ids, answers, strict=True) if waits]
        if not waiting:
            return self._summary(ids)
        if self.patience is not None and self.patience <= 0:
            for rid in waiting:
                self._settle(rid, "pending", {}, ran_in)
            return self._summary(ids)
        if not self.deferrable:
            return super().execute(context)
        deadline = time.time() + self.patience if self.patience is not None else None
        self.log.info("deferring: %d of %d request(s) not proven yet", len(waiting), len(ids))
        self.defer(
            trigger=DeletionProofTrigger(
                request_ids=waiting,
                erasure_step=self.erasure_step,
                conn_id=self.provider_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
                max_concurrency=self.max_concurrency,
                compliance_conn_id=self.compliance_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )
        return None

    def poke(self, context: Context) -> bool:
        """Non-deferrable mode: check the requests that have no proof yet."""
        ids = [rid for rid in as_request_ids(self.request_ids) if self._open(rid)]
        ran_in = task_try(context)
        return not any(run_batch(ids, lambda rid: self._first_check(rid, ran_in), self.max_concurrency))

    def execute_complete(self, context: Context, event: steps.ProofEvent) -> Any:
        ids = as_request_ids(self.request_ids)
        if event.get("status") != "settled":
            raise AirflowException(f"verification of {self.erasure_step}: {event.get('message') or event}")
        ran_in = task_try(context)
        errors = {}
        for rid, outcome in (event.get("outcomes") or {}).items():
            state, evidence = outcome.get("state"), outcome.get("evidence") or {}
            if state == "error":
                errors[rid] = evidence.get("reason", "check failed")
            else:
                self._settle(rid, state, evidence, ran_in)
        if errors:
            if will_retry(context, self.retries):
                raise AirflowException(f"checks kept failing for {len(errors)} request(s): {errors}")
            for rid, reason in errors.items():
                self._settle(rid, "failed", {"reason": reason}, ran_in)
        return self._summary(ids)

    # -- per request -----------------------------------------------------------------------

    def _open(self, request_id: str) -> bool:
        existing = self.store.steps(request_id).get(self.verify_step)
        return existing is None or existing.status not in (StepStatus.DONE, StepStatus.SKIPPED)

    def _first_check(self, request_id: str, ran_in: TaskTry | None) -> bool:
        """Settle the request if possible; True if it has to wait."""
        log = RequestLog(self.log, request_id)
        where = "error"  # what the group says if the check raises
        try:
            where = self._check_once(request_id, ran_in, log)
        finally:
            log.close(f"{self.task_id}: {request_id} ({where})")
        return where == "waiting"

    def _check_once(self, request_id: str, ran_in: TaskTry | None, log: RequestLog) -> str:
        """Check the request's proof once; returns where it stands (``waiting``: the trigger asks
        again)."""
        steps_ = self.store.steps(request_id)
        existing = steps_.get(self.verify_step)
        if existing is not None and existing.status is StepStatus.DONE:
            # A retry, or the next run re-checking the rest.
            log.info("already proven at %s", existing.updated_at.isoformat())
            return "done"
        erasure = steps_.get(self.erasure_step)
        if erasure is None or erasure.status in (StepStatus.FAILED, StepStatus.PENDING):
            state = erasure.status.value if erasure else "did not run"
            log.info("%s is %s: nothing to prove (write_ledger_record decides)", self.erasure_step, state)
            return "nothing to prove"
        check = None
        if erasure.status not in (StepStatus.SKIPPED, StepStatus.ALREADY_ABSENT):
            check = proof_check(self.erasure_step, erasure.result, self.provider_conn_id, self._tag)
        if check is None:
            self.store.record_step(
                request_id, self.verify_step, StepStatus.SKIPPED, {"reason": "nothing deleted"}, ran_in=ran_in
            )
            log.info("%s deleted nothing (%s): no proof needed", self.erasure_step, erasure.status.value)
            return "skipped"
        try:
            state, evidence = check.check()
        except Exception as exc:  # the trigger checks again; a lasting error surfaces there
            log.warning("first check failed (%s); waiting", exc)
            return "waiting"
        if state == "waiting":
            log.info("not proven yet (%s); waiting", evidence.get("summary") or evidence.get("status"))
            return "waiting"
        self._finish(request_id, state, evidence, ran_in, log)
        return state

    def _settle(self, request_id: str, state: str, evidence: dict[str, Any], ran_in: TaskTry | None) -> None:
        """Record and log one request's outcome, in its own log group."""
        log = RequestLog(self.log, request_id)
        try:
            self._finish(request_id, state, evidence, ran_in, log)
        finally:
            log.close(f"{self.task_id}: {request_id} ({state})")

    def _finish(
        self, request_id: str, state: str, evidence: dict[str, Any], ran_in: TaskTry | None, log: RequestLog
    ) -> None:
        if state == "done":
            self.store.record_step(request_id, self.verify_step, StepStatus.DONE, evidence, ran_in=ran_in)
            log.info("proven: %s", evidence)
        elif state == "pending":
            # Not a failure: the provider is still working. write_ledger_record moves the request to
            # ``verifying`` and a later run checks again.
            self.store.record_step(request_id, self.verify_step, StepStatus.PENDING, evidence, ran_in=ran_in)
            waited = f" after {self.patience}s of patience" if self.patience else ""
            log.info(
                "not proven yet%s (%s): a later run checks again",
                waited,
                evidence.get("summary") or evidence.get("status"),
            )
        else:
            self.store.record_step(request_id, self.verify_step, StepStatus.FAILED, evidence, ran_in=ran_in)
            log.error("%s", evidence.get("reason", "provider reported failure"))

    def _summary(self, ids: list[str]) -> dict[str, int]:
        """Counts of this batch's proofs by status (the task's XCom: no identifiers)."""
        counts: dict[str, int] = {}
        for rid in ids:
            result = self.store.steps(rid).get(self.verify_step)
            status = result.status.value if result else "not_checked"
            counts[status] = counts.get(status, 0) + 1
        self.log.info("%s for %d request(s): %s", self.verify_step, len(ids), counts)
        return counts

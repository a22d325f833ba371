"""Sensors that prove a deletion, deferring to a trigger so no worker slot waits."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from gdpr_erasure.operators.base import ComplianceStoreMixin, is_dry_run
from gdpr_erasure.store import StepStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID
from gdpr_erasure.triggers.base import PollUntilDoneTrigger


class VerificationFailed(AirflowFailException):
    """The provider reported that the deletion failed (not merely still running): a retry
    would read the same answer, so the task fails without retrying."""


class DeletionProofSensor(ComplianceStoreMixin, BaseSensorOperator):
    """Wait until a provider proves a purge step's deletion, then record the proof.

    Subclasses say which purge step they verify (:attr:`purge_step`), under which step name the
    proof is stored (:attr:`verify_step`), and build the trigger from the purge step's stored
    result. In deferrable mode (the default) the wait happens in the triggerer; otherwise the
    sensor pokes with the same check, best in ``mode="reschedule"``.

    :param request_id: the erasure request (templated).
    :param deferrable: wait in the triggerer instead of on a worker.
    :param poll_interval: seconds between provider checks.
    :param patience: seconds to wait in this run before handing the request over to a later run
        (status ``verifying``) instead of failing; None waits until ``timeout`` and then fails.
        For providers that are slow by design (a Segment regulation can take days).
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("request_id",)
    purge_step: str
    verify_step: str
    ui_color = "#fff8e1"

    def __init__(
        self,
        *,
        request_id: str,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        patience: float | None = None,
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.request_id = request_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.patience = patience
        self.compliance_conn_id = compliance_conn_id

    # -- to implement ----------------------------------------------------------------------

    def build_trigger(self, purge_result: dict[str, Any]) -> PollUntilDoneTrigger | None:
        """The trigger that proves the deletion, or None if there is nothing to prove."""
        raise NotImplementedError

    # -- flow --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        if is_dry_run(context):
            raise AirflowSkipException(f"dry run: nothing was deleted for {self.request_id}")
        existing = self.store.steps(self.request_id).get(self.verify_step)
        if existing is not None and existing.status is StepStatus.DONE:
            self.log.info("%s already proven for %s", self.purge_step, self.request_id)
            return existing.result
        trigger = self._trigger()
        if trigger is None:
            self.store.record_step(
                self.request_id, self.verify_step, StepStatus.SKIPPED, {"reason": "nothing deleted"}
            )
            self.log.info("nothing to verify for %s: %s deleted nothing", self.request_id, self.purge_step)
            return None
        state, evidence = trigger.check()  # often already true: then no deferral at all
        if state != "waiting":
            return self._finish(state, evidence)
        if self.patience is not None and self.patience <= 0:
            return self._finish("pending", evidence)
        if not self.deferrable:
            return super().execute(context)
        if self.patience is not None:
            trigger.deadline = time.time() + self.patience
        self.log.info("deferring: %s", evidence.get("summary", "waiting for the provider"))
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )
        return None

    def poke(self, context: Context) -> bool:
        trigger = self._trigger()
        state, evidence = trigger.check()
        if state == "waiting":
            return False
        self._finish(state, evidence)
        return True

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        status = event.get("status")
        if status == "success":
            return self._finish("done", event.get("evidence") or {})
        if status in ("failed", "pending"):
            return self._finish(status, event.get("evidence") or {})
        raise AirflowException(
            f"verification of {self.purge_step} for {self.request_id}: {event.get('message')}"
        )

    def _trigger(self) -> PollUntilDoneTrigger | None:
        purge = self.store.steps(self.request_id).get(self.purge_step)
        if purge is None:
            raise AirflowException(f"{self.purge_step} has not run for {self.request_id}")
        if purge.status in (StepStatus.SKIPPED, StepStatus.ALREADY_ABSENT):
            return None
        return self.build_trigger(purge.result)

    def _finish(self, state: str, evidence: dict[str, Any]) -> dict[str, Any]:
        if state == "done":
            self.store.record_step(self.request_id, self.verify_step, StepStatus.DONE, evidence)
            self.log.info("proven for %s: %s", self.request_id, evidence)
            return evidence
        if state == "pending":
            # Not a failure: the provider is still working. write_audit moves the request to
            # ``verifying`` and a later run checks again.
            self.store.record_step(self.request_id, self.verify_step, StepStatus.PENDING, evidence)
            self.log.info(
                "not proven yet for %s after %ss of patience (%s): a later run checks again",
                self.request_id,
                self.patience,
                evidence.get("summary") or evidence.get("status"),
            )
            return evidence
        self.store.record_step(self.request_id, self.verify_step, StepStatus.FAILED, evidence)
        raise VerificationFailed(f"{self.request_id}: {evidence.get('reason', 'provider reported failure')}")

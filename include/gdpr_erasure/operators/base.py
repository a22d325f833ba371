"""What every per-request operator shares: the request id, the store, dry runs, log groups."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from gdpr_erasure.hooks.errors import PermanentApiError
from gdpr_erasure.store import ComplianceStore, StepResult, StepStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID, resolve_db_url


def is_dry_run(context: Context) -> bool:
    params = context.get("params") or {}
    return bool(params.get("dry_run", False))


@contextmanager
def log_group(log, title: str) -> Iterator[None]:
    """An Airflow log group (collapsible in the UI's log view)."""
    log.info("::group::%s", title)
    try:
        yield
    finally:
        log.info("::endgroup::")


class ComplianceStoreMixin:
    """Access to the compliance store named by an Airflow connection (or the default)."""

    compliance_conn_id: str

    @cached_property
    def store(self) -> ComplianceStore:
        return ComplianceStore.from_url(resolve_db_url(conn_id=self.compliance_conn_id))


class ErasureStepOperator(ComplianceStoreMixin, BaseOperator):
    """Base class of the operators that act on one erasure request.

    Tasks exchange only the request id (XCom is stored in clear in Airflow's metadata DB, so an
    email or phone must never travel through it); each operator reads what it needs from the
    compliance store and writes its outcome back there, keyed by request id and step.

    :param request_id: the erasure request to work on (templated; mapped per request).
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("request_id",)
    #: Set by subclasses that change something outside our store; they skip in dry runs.
    has_side_effects: bool = True
    ui_color = "#f3e5f5"

    def __init__(self, *, request_id: str, compliance_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.request_id = request_id
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> Any:
        if self.has_side_effects and is_dry_run(context):
            raise AirflowSkipException(f"dry run: {self.task_id} changes nothing for {self.request_id}")
        try:
            return self.run(context)
        except PermanentApiError as exc:
            # A 4xx that cannot succeed (bad credentials, invalid request): no Airflow retry.
            raise AirflowFailException(str(exc)) from exc

    def run(self, context: Context) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, name: str) -> StepResult | None:
        return self.store.steps(self.request_id).get(name)

    def finished_step(self, name: str, proof: str | None = None) -> StepResult | None:
        """The step's earlier result if it finished and its proof (if any) did not fail: a rerun
        (task retry, crash recovery, the next run re-checking) then leaves it alone."""
        steps = self.store.steps(self.request_id)
        done = steps.get(name)
        if done is None or done.status in (StepStatus.FAILED, StepStatus.PENDING):
            return None
        if proof is not None and proof in steps and steps[proof].status is StepStatus.FAILED:
            return None  # the provider said the deletion failed: do it again
        return done

    def resolved(self) -> dict[str, Any]:
        """What ``resolve_identity`` found for this request (ids only)."""
        result = self.step("resolve")
        if result is None:
            raise RuntimeError(f"request {self.request_id} has not been resolved")
        return result.result

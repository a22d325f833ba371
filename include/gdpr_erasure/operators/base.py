"""What every erasure operator shares: a batch of request ids, the store, dry runs, log groups.

Each mapped task instance works on a *batch* of requests (``request_ids``), several at a time
in threads: one Airflow task per request and step costs about 0.3 s of CPU and a scheduling
round trip, which would dominate a backlog (docs/benchmarks.md). Each
request is still handled on its own: its outcome is recorded in the store under its id, its
log lines appear together in one log group, and its failure never stops the rest of the batch.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from gdpr_erasure.hooks.errors import PermanentApiError
from gdpr_erasure.store import ComplianceStore, StepResult, StepStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID, resolve_db_url
from gdpr_erasure.store.types import utcnow

#: Requests of one batch worked on at the same time (threads; each makes its own API calls).
DEFAULT_CONCURRENCY = int(os.environ.get("GDPR_ERASURE_CONCURRENCY", "8"))

_log_lock = threading.Lock()


def is_dry_run(context: Context) -> bool:
    params = context.get("params") or {}
    return bool(params.get("dry_run", False))


def as_request_ids(value: Any) -> list[str]:
    """A batch as a list of ids; a single id (or a list of batches) is accepted too."""
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    ids: list[str] = []
    for item in value:
        ids.extend(as_request_ids(item) if not isinstance(item, str) else [item])
    return ids


@contextmanager
def log_group(log, title: str) -> Iterator[None]:
    """An Airflow log group (collapsible in the UI's log view)."""
    log.info("::group::%s", title)
    try:
        yield
    finally:
        log.info("::endgroup::")


class UpstreamNotDone(Exception):
    """An earlier step of this request did not succeed: this step leaves the request alone and
    ``write_audit`` records why it failed."""


class RequestLog:
    """One request's log lines, held back while other requests of the batch log theirs, then
    written together as one log group (:meth:`flush`). Progress lines go out at once."""

    def __init__(self, log, request_id: str) -> None:
        self._log = log
        self.request_id = request_id
        self._lines: list[tuple[str, str, tuple]] = []

    def info(self, msg: str, *args: Any) -> None:
        self._lines.append(("info", msg, args))

    def warning(self, msg: str, *args: Any) -> None:
        self._lines.append(("warning", msg, args))

    def error(self, msg: str, *args: Any) -> None:
        self._lines.append(("error", msg, args))

    def progress(self, msg: str, *args: Any) -> None:
        self._log.info("%s: " + msg, self.request_id, *args)

    def flush(self, title: str) -> None:
        with _log_lock, log_group(self._log, title):
            for level, msg, args in self._lines:
                getattr(self._log, level)(msg, *args)
        self._lines.clear()


class RequestScope:
    """One request as seen by a step: its id, its recorded steps and its log.

    The recorded steps are read once, when first needed, and kept up to date with what this
    step records: the other tasks working on the request at the same time write other steps.
    """

    def __init__(self, store: ComplianceStore, request_id: str, log) -> None:
        self.store = store
        self.id = request_id
        self.log = RequestLog(log, request_id)
        self._steps: dict[str, StepResult] | None = None

    @property
    def steps(self) -> dict[str, StepResult]:
        if self._steps is None:
            self._steps = self.store.steps(self.id)
        return self._steps

    def step(self, name: str) -> StepResult | None:
        return self.steps.get(name)

    def record(self, name: str, status: StepStatus, result: dict[str, Any] | None = None) -> None:
        self.store.record_step(self.id, name, status, result)
        previous = self.steps.get(name)
        self.steps[name] = StepResult(
            step=name,
            status=status,
            result=dict(result or {}),
            attempts=(previous.attempts + 1) if previous else 1,
            updated_at=utcnow(),
        )

    def finished_step(self, name: str, proof: str | None = None) -> StepResult | None:
        """The step's earlier result if it finished and its proof (if any) did not fail: a rerun
        (task retry, crash recovery, the next run re-checking) then leaves it alone."""
        steps = self.steps
        done = steps.get(name)
        if done is None or done.status in (StepStatus.FAILED, StepStatus.PENDING):
            return None
        if proof is not None and proof in steps and steps[proof].status is StepStatus.FAILED:
            return None  # the provider said the deletion failed: do it again
        return done

    def resolved(self) -> dict[str, Any]:
        """What ``resolve_identity`` found for this request (ids only)."""
        result = self.step("resolve")
        if result is None or result.status is not StepStatus.DONE:
            raise UpstreamNotDone(f"request {self.id} has not been resolved")
        return result.result


class BatchIncomplete(AirflowException):
    """Some requests of the batch hit errors that may pass (provider outage outlasting the
    hook's retries, a crash of a dependency): Airflow retries the task, which redoes only those."""


def run_batch(ids: list[str], work: Callable[[str], Any], concurrency: int) -> list[Any]:
    """``work(id)`` for every id, ``concurrency`` at a time, results in the order of ``ids``."""
    if concurrency <= 1 or len(ids) <= 1:
        return [work(rid) for rid in ids]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(ids)), thread_name_prefix="erase") as pool:
        return list(pool.map(work, ids))


class ComplianceStoreMixin:
    """Access to the compliance store named by an Airflow connection (or the default)."""

    compliance_conn_id: str

    @cached_property
    def store(self) -> ComplianceStore:
        # No pre-ping: a task process lives for one task, and a dead connection fails the
        # transaction, which the task's retry repeats.
        return ComplianceStore.from_url(resolve_db_url(conn_id=self.compliance_conn_id), pre_ping=False)


class ErasureStepOperator(ComplianceStoreMixin, BaseOperator):
    """Base class of the operators that perform one step for a batch of erasure requests.

    Tasks exchange only request ids (XCom is stored in clear in Airflow's metadata DB, so an
    email or phone must never travel through it); each operator reads what it needs from the
    compliance store and writes each request's outcome back there, keyed by request id and step.

    Per request, :meth:`process` either succeeds, finds an earlier step undone (the request is
    left for ``write_audit`` to fail), or raises. A permanent error (a 4xx that cannot succeed)
    is recorded as the step's failure. Any other error is recorded too, and once every request
    of the batch has had its turn the task raises :class:`BatchIncomplete` so Airflow retries it;
    work already recorded is skipped on the retry. On the last try the task succeeds instead, so
    the rest of the batch goes on and ``write_audit`` marks the failed requests.

    :param request_ids: the batch of erasure requests (templated; mapped per batch).
    :param max_concurrency: requests of the batch worked on at the same time.
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("request_ids",)
    #: Set by subclasses that change something outside our store; they skip in dry runs.
    has_side_effects: bool = True
    #: The step this operator records (failures are recorded under it).
    step_name: str | None = None
    ui_color = "#f3e5f5"

    def __init__(
        self,
        *,
        request_ids: list[str] | str,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request_ids = request_ids
        self.max_concurrency = max_concurrency
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        ids = as_request_ids(self.request_ids)
        if self.has_side_effects and is_dry_run(context):
            raise AirflowSkipException(f"dry run: {self.task_id} changes nothing for {len(ids)} request(s)")
        outcomes = run_batch(ids, lambda rid: self._process_one(rid, context), self.max_concurrency)
        return self.conclude(ids, outcomes, context)

    def process(self, request: RequestScope, context: Context) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _process_one(self, request_id: str, context: Context) -> tuple[str, str]:
        request = RequestScope(self.store, request_id, self.log)
        try:
            self.process(request, context)
            return "ok", ""
        except UpstreamNotDone as exc:
            request.log.info("skipped: %s", exc)
            return "skipped", str(exc)
        except PermanentApiError as exc:
            # A 4xx that cannot succeed (bad credentials, invalid request): retrying is pointless.
            self.record_failure(request, str(exc))
            request.log.error("failed for good: %s", exc)
            return "failed", str(exc)
        except Exception as exc:  # hook errors are scrubbed of identifiers
            reason = f"{type(exc).__name__}: {exc}"
            self.record_failure(request, reason)
            request.log.error("error: %s", reason)
            return "error", reason
        finally:
            request.log.flush(f"{self.task_id}: {request_id}")

    def record_failure(self, request: RequestScope, reason: str) -> None:
        """Mark this step failed for the request, keeping what the step had recorded so far
        (a Stripe step's fixed timestamp, a Twilio inventory): the retry continues from there."""
        if self.step_name is None:
            return
        previous = request.step(self.step_name)
        request.record(
            self.step_name, StepStatus.FAILED, {**(previous.result if previous else {}), "reason": reason}
        )

    def conclude(self, ids: list[str], outcomes: list[tuple[str, str]], context: Context) -> dict[str, Any]:
        counts = Counter(kind for kind, _ in outcomes)
        self.log.info("%s: %d request(s): %s", self.task_id, len(ids), dict(sorted(counts.items())))
        errors = {rid: reason for rid, (kind, reason) in zip(ids, outcomes, strict=True) if kind == "error"}
        if errors:
            ti = context.get("ti")
            if ti is not None and ti.try_number <= (self.retries or 0):
                raise BatchIncomplete(
                    f"{len(errors)} of {len(ids)} request(s) hit errors; retrying them "
                    f"(what succeeded is kept): {errors}"
                )
            self.log.error(
                "%d request(s) still failing on the last try; write_audit marks them failed: %s",
                len(errors),
                errors,
            )
        return {"requests": len(ids), **counts}

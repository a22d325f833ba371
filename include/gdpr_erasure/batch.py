"""The batch runtime every erasure task shares, operators and sensors alike.

Each mapped task instance works on a *batch* of requests (``request_ids``), several at a time
in threads: one Airflow task per request and step costs about 0.3 s of CPU and a scheduling
round trip, which would dominate a backlog (docs/benchmarks.md). Each request is still handled
on its own: its outcome is recorded in the store under its id with the task instance and try
that recorded it (:func:`task_try`), its log lines are marked with its id as they happen and
gathered in one log group when it is done (:class:`RequestLog`), and its failure never stops the
rest of the batch.

This module holds what that takes: the request's view of the store (:class:`RequestScope`) and
its log (:class:`RequestLog`), running a batch in threads (:func:`run_batch`), the dry-run and
retry-or-settle checks, and the store of the ``compliance_db`` connection
(:class:`ComplianceStoreMixin`). It sits below ``operators/`` and ``sensors/``, which both
import it; it imports neither.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException

from gdpr_erasure import steps
from gdpr_erasure.store import ComplianceStore, StepResult, StepStatus, TaskTry
from gdpr_erasure.store.engine import resolve_db_url
from gdpr_erasure.store.types import utcnow

#: Requests of one batch worked on at the same time (threads; each makes its own API calls).
DEFAULT_CONCURRENCY = int(os.environ.get("GDPR_ERASURE_CONCURRENCY", "8"))

_log_lock = threading.Lock()


def is_dry_run(context: Context) -> bool:
    """Whether the run was triggered with ``dry_run`` (resolve and report, change nothing).

    :param context: the task's context.
    """
    params = context.get("params") or {}
    return bool(params.get("dry_run", False))


def will_retry(context: Context, retries: int | None) -> bool:
    """Whether Airflow runs the task again if it fails now. Errors that may pass (a provider
    outage outlasting the hook's retries) fail the task while tries remain, so the retry redoes
    only those requests; on the last try they are settled instead, so the rest of the batch goes
    on and ``write_ledger_record`` marks them failed.

    :param context: the task's context.
    :param retries: the task's ``retries``.
    """
    ti = context.get("ti")
    return ti is not None and ti.try_number <= (retries or 0)


def task_try(context: Context) -> TaskTry | None:
    """The task instance and try running now, recorded with each step it works on so that the
    step's log can be found (None without a task instance: a test calling ``execute`` directly).

    :param context: the task's context; its ``ti`` is the task SDK's ``RuntimeTaskInstance``.
    """
    ti = context.get("ti")
    if ti is None:
        return None
    map_index = getattr(ti, "map_index", None)
    return TaskTry(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=map_index if map_index is not None else -1,  # the SDK's None means not mapped
        try_number=getattr(ti, "try_number", None),
    )


def as_request_ids(value: Any) -> list[str]:
    """A batch as a list of ids; a single id (or a list of batches) is accepted too.

    :param value: the rendered ``request_ids`` of a task.
    """
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
    """An Airflow log group (collapsible in the UI's log view).

    :param log: the task's logger.
    :param title: the group's title.
    """
    log.info("::group::%s", title)
    try:
        yield
    finally:
        log.info("::endgroup::")


class UpstreamNotDone(Exception):
    """An earlier step of this request did not succeed: this step leaves the request alone and
    ``write_ledger_record`` records why it failed."""


class BatchIncomplete(AirflowException):
    """Some requests of the batch hit errors that may pass (provider outage outlasting the
    hook's retries, a crash of a dependency): Airflow retries the task, which redoes only those."""


class RequestLog:
    """One request's lines in its batch task's log.

    Up to eight requests of a batch are worked on at once, in threads, and a task can die at any
    moment (a SIGKILLed worker runs no cleanup). Airflow's log groups are lines, ``::group::TITLE``
    and ``::endgroup::``, that the UI nests in the order they come, so a group cannot stay open
    for one request while the others write: their lines would land inside it. So each line is
    written twice:

    * **as it happens**, marked ``[request_id]`` (:meth:`info`, :meth:`warning`, :meth:`error`,
      and :meth:`progress`, which is not repeated): attributable however the requests
      interleave, found by searching the UI's log view for the id, and in the log file even if
      the task is killed a line later (the task SDK sends each line to its supervisor unbuffered);
    * **together, when the request is done** (:meth:`close`): one log group titled with the task,
      the request and its outcome, holding the request's lines in order. Folded, a batch's log
      reads one line per request; unfolded, one request reads on its own. A request cut short by
      a kill has no group, only its marked lines.

    Every write takes one lock, so a group is never split by another request's line (lines that
    libraries log from their own threads, without the lock, can still fall inside one).

    :param log: the task's logger.
    :param request_id: the request the lines are about (an id, never an identifier).
    """

    def __init__(self, log, request_id: str) -> None:
        self._log = log
        self.request_id = request_id
        self._lines: list[tuple[str, str, tuple]] = []

    def info(self, msg: str, *args: Any) -> None:
        self._write("info", msg, args)

    def warning(self, msg: str, *args: Any) -> None:
        self._write("warning", msg, args)

    def error(self, msg: str, *args: Any) -> None:
        self._write("error", msg, args)

    def progress(self, msg: str, *args: Any) -> None:
        """A line written now and left out of the request's group (progress of a long loop)."""
        with _log_lock:
            self._log.info("[%s] " + msg, self.request_id, *args)

    def _write(self, level: str, msg: str, args: tuple) -> None:
        with _log_lock:
            getattr(self._log, level)("[%s] " + msg, self.request_id, *args)
        self._lines.append((level, msg, args))

    def close(self, title: str) -> None:
        """Write the request's lines again, together, as one log group.

        :param title: the group's title: the task, the request and its outcome.
        """
        with _log_lock, log_group(self._log, title):
            for level, msg, args in self._lines:
                getattr(self._log, level)(msg, *args)
        self._lines.clear()


class RequestScope:
    """One request as seen by a step: its id, its recorded steps and its log.

    The recorded steps are read once, when first needed, and kept up to date with what this
    step records: the other tasks working on the request at the same time write other steps.

    :param store: the compliance store.
    :param request_id: the request.
    :param log: the task's logger (the request's lines are grouped, see :class:`RequestLog`).
    :param ran_in: the task instance and try working on the request, recorded with every step
        it records (:func:`task_try`); None records none and keeps what a step's row holds.
    """

    def __init__(self, store: ComplianceStore, request_id: str, log, ran_in: TaskTry | None = None) -> None:
        self.store = store
        self.id = request_id
        self.log = RequestLog(log, request_id)
        self.ran_in = ran_in
        self._steps: dict[str, StepResult] | None = None

    @property
    def steps(self) -> dict[str, StepResult]:
        if self._steps is None:
            self._steps = self.store.steps(self.id)
        return self._steps

    def step(self, name: str) -> StepResult | None:
        return self.steps.get(name)

    def record(self, name: str, status: StepStatus, result: dict[str, Any] | None = None) -> None:
        self.store.record_step(self.id, name, status, result, ran_in=self.ran_in)
        previous = self.steps.get(name)
        self.steps[name] = StepResult(
            step=name,
            status=status,
            result=dict(result or {}),
            attempts=(previous.attempts + 1) if previous else 1,
            updated_at=utcnow(),
            ran_in=self.ran_in or (previous.ran_in if previous else None),
        )

    def finished_step(self, name: str, proof: str | None = None) -> StepResult | None:
        """The step's earlier result if it finished and its proof (if any) did not fail: a rerun
        (task retry, crash recovery, the next run re-checking) then leaves it alone.

        :param name: the step.
        :param proof: the verification step that proves it, if any.
        """
        steps_ = self.steps
        done = steps_.get(name)
        if done is None or done.status in (StepStatus.FAILED, StepStatus.PENDING):
            return None
        if proof is not None and proof in steps_ and steps_[proof].status is StepStatus.FAILED:
            return None  # the provider said the deletion failed: do it again
        return done

    def resolved(self) -> steps.Resolution:
        """What ``resolve_identity`` found for this request (ids only)."""
        result = self.step(steps.RESOLVE)
        if result is None or result.status is not StepStatus.DONE:
            raise UpstreamNotDone(f"request {self.id} has not been resolved")
        return steps.result_as(steps.Resolution, result)


def run_batch(ids: list[str], work: Callable[[str], Any], concurrency: int) -> list[Any]:
    """``work(id)`` for every id, ``concurrency`` at a time, results in the order of ``ids``.

    :param ids: the batch's request ids.
    :param work: what to do for one request.
    :param concurrency: requests worked on at the same time (threads).
    """
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

"""The base class of the operators that perform one erasure step for a batch of requests.

The batch runtime it stands on (request scopes, log groups, threads, dry runs, the store) is in
:mod:`gdpr_erasure.batch`, shared with the sensors.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from gdpr_erasure.batch import (
    DEFAULT_CONCURRENCY,
    BatchIncomplete,
    ComplianceStoreMixin,
    RequestScope,
    UpstreamNotDone,
    as_request_ids,
    is_dry_run,
    run_batch,
    task_try,
    will_retry,
)
from gdpr_erasure.holds import IdentifierHasher
from gdpr_erasure.hooks.errors import PermanentApiError
from gdpr_erasure.store import StepStatus, TaskTry
from gdpr_erasure.store.engine import DEFAULT_CONN_ID

H = TypeVar("H")


class ErasureStepOperator(ComplianceStoreMixin, BaseOperator):
    """Base class of the operators that perform one step for a batch of erasure requests.

    Tasks exchange only request ids (XCom is stored in clear in Airflow's metadata DB, so an
    email or phone must never travel through it); each operator reads what it needs from the
    compliance store and writes each request's outcome back there, keyed by request id and step,
    with the task instance and try that wrote it (where its log is).

    Per request, :meth:`process` either succeeds, finds an earlier step undone (the request is
    left for ``write_ledger_record`` to fail), or raises; its log lines are marked with its id as
    they happen and gathered in a log group titled with the outcome once it is done
    (:class:`~gdpr_erasure.batch.RequestLog`). A permanent error (a 4xx that cannot succeed)
    is recorded as the step's failure. Any other error is recorded too, and once every request
    of the batch has had its turn the task raises :class:`BatchIncomplete` so Airflow retries it;
    work already recorded is skipped on the retry. On the last try the task succeeds instead, so
    the rest of the batch goes on and ``write_ledger_record`` marks the failed requests.

    Legal holds: right before :meth:`process` runs for a request, a step that writes to a provider
    (``has_side_effects``) asks the store whether a hold now applies to it (one placed after the
    claim, or on its identifiers). If so the step writes nothing, the request goes ``on_hold``,
    and one line names the hold (never the person). That is not a failure: what earlier steps did
    stays recorded and is not repeated after the release (:mod:`gdpr_erasure.holds`).

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
        self._hashes_of = IdentifierHasher()  # loads the hash key only while a hold names a person

    def execute(self, context: Context) -> dict[str, Any]:
        ids = as_request_ids(self.request_ids)
        if self.has_side_effects and is_dry_run(context):
            raise AirflowSkipException(f"dry run: {self.task_id} changes nothing for {len(ids)} request(s)")
        ran_in = task_try(context)
        self._thread_hooks = threading.local()
        try:
            outcomes = run_batch(
                ids, lambda rid: self._process_one(rid, context, ran_in), self.max_concurrency
            )
        finally:
            del self._thread_hooks  # the task's hooks go with it (and a lock cannot be deep-copied)
        return self.conclude(ids, outcomes, context)

    def hook(self, hook_class: type[H], conn_id: str) -> H:
        """This worker thread's ``hook_class(conn_id)`` for this task, built on its first use.

        The requests a thread works on share the hook, so they share its SDK client and that
        client's HTTP connection: one TCP and TLS handshake per thread and provider in a batch
        instead of one per request. No hook is shared between threads (an SDK client's session
        is not documented thread-safe, and the Twilio hook keeps its last response). Outside
        :meth:`execute` (a test calling :meth:`process`) every call builds a new hook.

        :param hook_class: ``StripeHook``, ``TwilioHook`` or ``SegmentHook``.
        :param conn_id: its connection.
        """
        local = getattr(self, "_thread_hooks", None)
        if local is None:
            return hook_class(conn_id)
        hooks = local.__dict__.setdefault("hooks", {})
        if (hook_class, conn_id) not in hooks:
            hooks[(hook_class, conn_id)] = hook_class(conn_id)
        return hooks[(hook_class, conn_id)]

    def process(self, request: RequestScope, context: Context) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _process_one(self, request_id: str, context: Context, ran_in: TaskTry | None) -> tuple[str, str]:
        request = RequestScope(self.store, request_id, self.log, ran_in)
        outcome: tuple[str, str] = ("error", "interrupted")
        try:
            hold = (
                self.store.hold_before_write(request_id, self._hashes_of) if self.has_side_effects else None
            )
            if hold is not None:
                request.log.info("on hold (%s): nothing written; erasure resumes after its release", hold)
                outcome = ("held", hold)
                return outcome
            self.process(request, context)
            outcome = ("ok", "")
        except UpstreamNotDone as exc:
            request.log.info("skipped: %s", exc)
            outcome = ("skipped", str(exc))
        except PermanentApiError as exc:
            # A 4xx that cannot succeed (bad credentials, invalid request): retrying is pointless.
            self.record_failure(request, str(exc))
            request.log.error("failed for good: %s", exc)
            outcome = ("failed", str(exc))
        except Exception as exc:  # hook errors are scrubbed of identifiers
            reason = f"{type(exc).__name__}: {exc}"
            self.record_failure(request, reason)
            request.log.error("error: %s", reason)
            outcome = ("error", reason)
        finally:
            request.log.close(f"{self.task_id}: {request_id} ({outcome[0]})")
        return outcome

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
            if will_retry(context, self.retries):
                raise BatchIncomplete(
                    f"{len(errors)} of {len(ids)} request(s) hit errors; retrying them "
                    f"(what succeeded is kept): {errors}"
                )
            self.log.error(
                "%d request(s) still failing on the last try; write_ledger_record marks them failed: %s",
                len(errors),
                errors,
            )
        return {"requests": len(ids), **counts}

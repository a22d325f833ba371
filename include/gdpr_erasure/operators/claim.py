"""Take a batch of pending requests for this run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.configuration import conf

from gdpr_erasure.batch import ComplianceStoreMixin, is_dry_run
from gdpr_erasure.holds import IdentifierHasher, holds_on_another_key
from gdpr_erasure.store import RequestStatus
from gdpr_erasure.store.engine import DEFAULT_CONN_ID

#: ``batch_size`` value that sizes the mapped groups by how many requests the run claims.
AUTO = "auto"
#: Requests per mapped group for a backlog under ``auto``: the size tuned in docs/benchmarks.md.
BACKLOG_BATCH_SIZE = 50
#: Under ``auto``, runs claiming at most this many requests give each its own mapped group. Chosen
#: from ``make bench`` (docs/benchmarks.md, "One group per request or batches"): up to here one
#: group per request costs at most about two minutes more than batches on 2 cores, and its CPU
#: per request has not yet started to grow with the run (the scheduler's own load beyond).
PER_REQUEST_UP_TO = 32


class RequestClaimOperator(ComplianceStoreMixin, BaseOperator):
    """Atomically claim up to ``max_requests`` requests and return their ids in batches, one per
    mapped group (only ids: this list is XCom, which is stored in clear in Airflow's metadata
    DB). Claimed are pending requests, failed ones (retry), verifying ones (re-check), deferred
    ones whose ``not_before`` has passed (a provider's quota was reset) and those whose run died
    (lease expired). Deferred requests that are not due yet stay for a later run. Requests an
    active legal hold names go ``on_hold`` instead of being claimed, in the claim's transaction;
    ``on_hold`` requests whose holds expired go back to ``pending`` first (docs/holds.md).

    With ``batch_size`` ``auto`` (the default), a run that claims at most ``per_request_up_to``
    requests gives each request its own mapped group, labelled by its request id in the grid, so
    ops and auditors find one request's tasks and logs at a glance; a larger run (a backlog)
    goes in batches of ``BACKLOG_BATCH_SIZE``, which is what keeps it fast.

    The number of batches never exceeds ``[core] max_map_length``, so the mapped groups
    downstream always expand; what is left waits for the next run. In a dry run nothing is
    claimed: the pending requests are listed so they can be resolved and reported.

    :param max_requests: most requests this run takes (templated).
    :param batch_size: requests per mapped group, or ``"auto"`` (templated); each task of the
        group works on its batch a few requests at a time.
    :param per_request_up_to: with ``batch_size`` ``auto``, the largest run that still gets one
        mapped group per request (templated; 0: always batches).
    :param request_ids: only these requests, if given (templated).
    :param lease: how long the claim holds before another run may take the request over; longer
        than a run normally lasts, short enough that a crash delays requests by hours, not days.
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("max_requests", "batch_size", "per_request_up_to", "request_ids")
    ui_color = "#e1f5fe"

    def __init__(
        self,
        *,
        max_requests: int | str = 1000,
        batch_size: int | str = AUTO,
        per_request_up_to: int | str = PER_REQUEST_UP_TO,
        request_ids: list[str] | str | None = None,
        lease: timedelta = timedelta(hours=6),
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_requests = max_requests
        self.batch_size = batch_size
        self.per_request_up_to = per_request_up_to
        self.request_ids = request_ids
        self.lease = lease
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> list[list[str]]:
        max_groups = conf.getint("core", "max_map_length", fallback=1024)
        size_for = group_sizer(self.batch_size, self.per_request_up_to, max_groups)
        limit = min(int(self.max_requests), max_groups * size_for(int(self.max_requests)))
        wanted = _as_list(self.request_ids)
        if is_dry_run(context):
            pending = self.store.list_requests([RequestStatus.PENDING], limit=limit)
            ids = [r.id for r in pending if not wanted or r.id in wanted]
            self.log.info("dry run: %d pending request(s) will be resolved, nothing claimed", len(ids))
            return batches(ids, size_for(len(ids)))
        hashes_of = IdentifierHasher()  # the hash key is loaded only while a hold names a person
        on_people = [h for h in self.store.list_holds() if h.target_type != "request"]
        for hold in holds_on_another_key(on_people, hashes_of.key) if on_people else []:
            # A rotated gdpr_hash_key: the hold's hash can no longer match anyone. Loud, since
            # a hold that matches nobody lets the person's erasure through.
            self.log.warning(
                "legal hold %s was placed with hash key %r, not the current %r: it matches no request "
                "any more; place it again (gdpr-erasure hold place) and release this one",
                hold.hold_id,
                hold.hash_key_id,
                hashes_of.key.key_id,
            )
        unheld = self.store.release_unheld_requests(hashes_of)
        if unheld:
            self.log.info("%d request(s) back to pending: their legal holds expired", len(unheld))
        ids = self.store.claim(
            limit,
            claimed_by=f"{context['dag'].dag_id}/{context['run_id']}",
            lease=self.lease,
            request_ids=wanted or None,
            batch_size=size_for,  # each request records the map index of the batch it goes to
            hashes_of=hashes_of,  # held requests go on_hold instead
        )
        size = size_for(len(ids))
        counts = self.store.counts_by_status()
        backlog = counts.get(RequestStatus.PENDING.value, 0)
        self.log.info(
            "claimed %d request(s) (limit %d) in %d group(s) of up to %d%s; %d still pending for later runs",
            len(ids),
            limit,
            -(-len(ids) // size),
            size,
            " (one group per request: the run is small)" if size == 1 and len(ids) > 1 else "",
            backlog,
        )
        if counts.get(RequestStatus.ON_HOLD.value):
            self.log.info(
                "%d request(s) on hold (legal holds): not claimed until released; gdpr-erasure hold list",
                counts[RequestStatus.ON_HOLD.value],
            )
        if counts.get(RequestStatus.DEFERRED.value):
            due = self.store.deferred_requests(limit=1)[0].not_before
            self.log.info(
                "%d request(s) deferred until a provider's quota resets; the next is due %s",
                counts[RequestStatus.DEFERRED.value],
                due.isoformat(),
            )
        return batches(ids, size)


def group_sizer(batch_size: int | str, per_request_up_to: int | str, max_groups: int) -> Callable[[int], int]:
    """Requests per mapped group as a function of how many the run claims.

    A number is that size whatever the count; ``auto`` is 1 while the count is at most
    ``per_request_up_to`` (never more groups than ``max_groups``), ``BACKLOG_BATCH_SIZE`` above.
    """
    if str(batch_size).strip().lower() == AUTO:
        up_to = min(int(per_request_up_to), max_groups)
        if up_to < 0:
            raise ValueError(f"per_request_up_to must be 0 or more, not {up_to}")
        return lambda claimed: 1 if claimed <= up_to else BACKLOG_BATCH_SIZE
    try:
        size = int(batch_size)
    except ValueError:
        raise ValueError(f"batch_size must be a number of requests or {AUTO!r}, not {batch_size!r}") from None
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, not {size}")
    return lambda claimed: size


def batches(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _as_list(value: list[str] | str | None) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]

"""The life of an erasure request, as a state machine.

::

    pending ──claim──> in_progress ──purged──> verifying ──proven──> completed
       ^                  │   │                   │
       │                  │   └──────────────> completed      (nothing left to wait for)
       │                  v                       v
       └──retry────── failed <──────────────── failed
       └──requeue──── needs_attention <──── failed / in_progress / verifying

``completed`` is final. ``failed`` means this attempt failed and the request may be retried;
``needs_attention`` means retries are exhausted and a person must look (``gdpr-erasure requeue``).
An expired lease on ``in_progress`` lets a later run claim the request again (crash recovery).
"""

from __future__ import annotations

from enum import StrEnum


class RequestStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"


S = RequestStatus

#: For each target status, the statuses a request may move to it from.
ALLOWED_SOURCES: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.PENDING: frozenset({S.FAILED, S.NEEDS_ATTENTION}),
    S.IN_PROGRESS: frozenset({S.PENDING, S.VERIFYING}),
    S.VERIFYING: frozenset({S.IN_PROGRESS}),
    S.COMPLETED: frozenset({S.IN_PROGRESS, S.VERIFYING}),
    S.FAILED: frozenset({S.IN_PROGRESS, S.VERIFYING}),
    S.NEEDS_ATTENTION: frozenset({S.FAILED, S.IN_PROGRESS, S.VERIFYING}),
}

FINAL_STATUSES = frozenset({S.COMPLETED})


def can_transition(source: RequestStatus, target: RequestStatus) -> bool:
    return source in ALLOWED_SOURCES[target]


class StepStatus(StrEnum):
    """Outcome of one step (resolve, one purge, one verification) for one request."""

    DONE = "done"
    SKIPPED = "skipped"  # nothing to do in that system (e.g. no Stripe customer)
    ALREADY_ABSENT = "already_absent"  # the data was gone before we acted
    PENDING = "pending"  # started, waiting on the provider (e.g. Segment regulation RUNNING)
    FAILED = "failed"

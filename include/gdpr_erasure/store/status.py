"""The life of an erasure request, as a state machine.

::

    pending --claim--> in_progress --all erased and proven--> completed (final)
                        |  ^   |
     a provider is still|  |   +--a step failed--> failed --next run claims it (retry)--> in_progress
     working (Segment)  v  |                        |
                      verifying                     +--N-th failure--> needs_attention
                  (next run re-checks                                        |
                   only what is pending)           pending <--gdpr-erasure requeue--+

Claimable by a run: ``pending``, ``failed`` (retry), ``verifying`` (re-check), and
``in_progress`` whose lease expired (the run that held it died). ``needs_attention`` waits for
a person; ``completed`` never changes again.
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
    S.IN_PROGRESS: frozenset({S.PENDING, S.VERIFYING, S.FAILED}),
    S.VERIFYING: frozenset({S.IN_PROGRESS}),
    S.COMPLETED: frozenset({S.IN_PROGRESS, S.VERIFYING}),
    S.FAILED: frozenset({S.IN_PROGRESS, S.VERIFYING}),
    S.NEEDS_ATTENTION: frozenset({S.FAILED, S.IN_PROGRESS, S.VERIFYING}),
}

FINAL_STATUSES = frozenset({S.COMPLETED})
#: Statuses a run may claim (plus ``in_progress`` with an expired lease).
CLAIMABLE = frozenset({S.PENDING, S.FAILED, S.VERIFYING})


def can_transition(source: RequestStatus, target: RequestStatus) -> bool:
    return source in ALLOWED_SOURCES[target]


class StepStatus(StrEnum):
    """Outcome of one step (resolve, one purge, one verification) for one request."""

    DONE = "done"
    SKIPPED = "skipped"  # nothing to do in that system (e.g. no Stripe customer)
    ALREADY_ABSENT = "already_absent"  # the data was gone before we acted
    PENDING = "pending"  # started, waiting on the provider (e.g. Segment regulation RUNNING)
    FAILED = "failed"

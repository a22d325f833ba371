"""The life of an erasure request, as a state machine.

::

    pending --claim--> in_progress --all erased and proven--> completed (final)
                        |  ^     |  |
     a provider is still|  |     |  +--a step failed--> failed --next run claims it (retry)--> in_progress
     working (Segment)  v  |     |                        |
                      verifying  |                        +--N-th failure--> needs_attention
                  (next run re-  |                                                  |
                   checks only   |                     pending <--gdpr-erasure requeue--+
                   what is       |
                   pending)      +--a provider's quota is spent--> deferred (until not_before)
                                    (Segment's monthly regulations)    |
                                      in_progress <--a run claims it once not_before has passed
                                                     (only the waiting step runs again)

    pending, failed, verifying, deferred --a legal hold is placed, or a run's claim finds one--> on_hold
    in_progress --an erasure step finds a hold right before it writes--> on_hold
    on_hold --the last hold on it is released (gdpr-erasure hold release) or expires--> pending

    in_progress, verifying --all erased and proven except what the--> completed_with_exemptions
                              erasure policy kept (docs/policy.md)       |  (final unless a kept
                                                                         |   object has a review date)
    in_progress <--a run claims it once its not_before (the earliest review date) has passed--+
                   (only the kept objects are checked again; done steps are not repeated)

Claimable by a run: ``pending``, ``failed`` (retry), ``verifying`` (re-check), ``deferred``
once its ``not_before`` has passed, and ``in_progress`` whose lease expired (the run that held
it died), and ``completed_with_exemptions`` once its ``not_before`` (a review date) has passed.
``needs_attention`` waits for a person; ``completed`` never changes again.

``completed_with_exemptions`` is done, like ``completed``, except for what the erasure policy
kept (:mod:`gdpr_erasure.policy`: a Stripe customer withheld for an open dispute, redacted with
its amounts kept, held for a person's review). Everything else is erased and proven, and the
audit record lists each kept object with its reason and legal basis. When a kept object has a
review date (``withhold``), the earliest is the request's ``not_before``, and the first run after
it checks only the kept objects again (its audit ledger gets a review entry; the request ends
``completed`` once nothing is kept). Without a review date (``retain``, ``redact`` with a
retention period, ``hold_for_review``) no run claims it again; ``gdpr-erasure requeue`` or a
released legal hold sends it back to ``pending`` for a check now.

``deferred`` is not a failure: a provider asked us to wait longer than a task should (Segment's
monthly regulation quota, answered with a 429 whose reset is days away). The request keeps what
its other steps did, does not count toward ``needs_attention``, and only the waiting step runs
again when a run claims it after ``not_before``. Ops may send it back to ``pending`` at once
(``gdpr-erasure requeue``), for instance after Segment raised the quota.

``on_hold`` is not a failure either: a legal hold (:mod:`gdpr_erasure.holds`, docs/holds.md)
names the request, or one of its identifiers by keyed hash, and no run claims it or writes to a
provider for it while the hold is active. Steps already done stay recorded, so after the release
the next run resumes where it stopped.
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
    DEFERRED = "deferred"  # waiting for a provider's quota until ``not_before``
    ON_HOLD = "on_hold"  # a legal hold keeps it from being erased (gdpr_erasure.holds)
    #: Done except for what the erasure policy kept; claimable again at ``not_before`` (a review
    #: date) if it has one.
    COMPLETED_WITH_EXEMPTIONS = "completed_with_exemptions"


S = RequestStatus

#: For each target status, the statuses a request may move to it from.
ALLOWED_SOURCES: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.PENDING: frozenset({S.FAILED, S.NEEDS_ATTENTION, S.DEFERRED, S.ON_HOLD, S.COMPLETED_WITH_EXEMPTIONS}),
    S.IN_PROGRESS: frozenset({S.PENDING, S.VERIFYING, S.FAILED, S.DEFERRED, S.COMPLETED_WITH_EXEMPTIONS}),
    S.VERIFYING: frozenset({S.IN_PROGRESS}),
    S.COMPLETED: frozenset({S.IN_PROGRESS, S.VERIFYING}),
    S.FAILED: frozenset({S.IN_PROGRESS, S.VERIFYING}),
    S.NEEDS_ATTENTION: frozenset({S.FAILED, S.IN_PROGRESS, S.VERIFYING}),
    S.DEFERRED: frozenset({S.IN_PROGRESS}),
    S.ON_HOLD: frozenset(
        {S.PENDING, S.FAILED, S.VERIFYING, S.DEFERRED, S.IN_PROGRESS, S.COMPLETED_WITH_EXEMPTIONS}
    ),
    S.COMPLETED_WITH_EXEMPTIONS: frozenset({S.IN_PROGRESS, S.VERIFYING}),
}

FINAL_STATUSES = frozenset({S.COMPLETED})
#: The statuses of a request that was closed, with or without exemptions: it has its audit record.
CLOSED = frozenset({S.COMPLETED, S.COMPLETED_WITH_EXEMPTIONS})
#: Statuses a run may claim once their ``not_before`` (if any) has passed, plus ``in_progress``
#: with an expired lease. ``completed_with_exemptions`` only with a ``not_before`` (a review
#: date): without one it waits for a person (:meth:`ComplianceStore.claim`).
CLAIMABLE = frozenset({S.PENDING, S.FAILED, S.VERIFYING, S.DEFERRED, S.COMPLETED_WITH_EXEMPTIONS})


def can_transition(source: RequestStatus, target: RequestStatus) -> bool:
    return source in ALLOWED_SOURCES[target]


class StepStatus(StrEnum):
    """Outcome of one step (resolve, one erasure, one verification) for one request."""

    DONE = "done"
    SKIPPED = "skipped"  # nothing to do in that system (e.g. no Stripe customer)
    ALREADY_ABSENT = "already_absent"  # the data was gone before we acted
    PENDING = "pending"  # started, waiting on the provider (e.g. Segment regulation RUNNING)
    FAILED = "failed"

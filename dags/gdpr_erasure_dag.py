"""
### GDPR right to be forgotten

Drains the intake table of erasure requests. **preflight** first proves every connection
(read-only: a wrong token, space or external id type answers "not found", like a person without
data) and fails the run before anything is claimed if one is wrong. The claimed requests are
split into batches, and each batch goes through its own mapped group, where every step handles
each request on its own (its own outcome, log group and failure):

1. **resolve_identity** - find the person's Segment profile and user ids, Twilio Memory
   profile(s) and Stripe customers;
2. **erase**, in parallel - delete the Twilio Memory profile, delete the Twilio communication
   history, create a Segment regulation, tag the Stripe customers and delete them (or run a
   redaction job);
3. **verify** - deferrable sensors wait, without holding a worker, until each provider proves
   the deletion (Memory 404, regulation `FINISHED`, Stripe `deleted: true`);
4. **write_ledger_record** - append one tamper-evident record to the audit ledger, mark the
   request completed and replace its identifiers by their keyed hash.

`summarize_run` counts the outcomes, lists requests nearing or past the 30-day limit, and
**fails the run if any request failed or is overdue** (the failure callback alerts), so a
failure never hides behind a green run. Tasks pass only request ids; identifiers stay in the
compliance store.

Each run also takes back: `failed` requests (retried; after 3 failures they go to
`needs_attention` until ops run `gdpr-erasure requeue ID`), `verifying` requests (a Segment
regulation still running: only the pending proof is checked again), `deferred` requests whose
provider quota has reset (Segment's monthly regulation limit: they wait until `not_before`
instead of failing), and requests whose run died (their lease expired). Steps already done are
never repeated.

**Trigger by hand** with the Params form: `max_requests` for this run, `batch_size` requests per
mapped group (`auto`: one group per request, labelled by its id, when the run claims at most
`per_request_up_to`; batches of 50 for a backlog), `request_ids` to target specific requests,
`dry_run` to resolve and report without deleting anything.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task_group

from gdpr_erasure.notifiers import ComplianceAlertNotifier
from gdpr_erasure.operators.claim import PER_REQUEST_UP_TO, RequestClaimOperator
from gdpr_erasure.operators.ledger_record import LedgerRecordOperator
from gdpr_erasure.operators.preflight import PreflightCheckOperator
from gdpr_erasure.operators.resolve import IdentityResolutionOperator
from gdpr_erasure.operators.retention import IdentifierRetentionOperator
from gdpr_erasure.operators.segment import SegmentRegulationOperator
from gdpr_erasure.operators.stripe import StripeCustomerErasureOperator
from gdpr_erasure.operators.summary import RunSummaryOperator
from gdpr_erasure.operators.twilio import TwilioHistoryErasureOperator, TwilioMemoryProfileErasureOperator
from gdpr_erasure.policy import load_policy, policy_location
from gdpr_erasure.sensors.segment import SegmentRegulationSensor
from gdpr_erasure.sensors.stripe import StripeCustomerDeletedSensor
from gdpr_erasure.sensors.twilio import TwilioMemoryProfileDeletedSensor

# The erasure policy (docs/policy.md), validated whole at every parse: a bad file is this DAG's
# import error naming its line, so no run starts on a policy that would apply only in part.
ERASURE_POLICY = load_policy(policy_location())

# How long a run waits for a Segment regulation before leaving the request in `verifying` for
# the next run (regulations can take days; Segment's own SLA is 30).
SEGMENT_PATIENCE_SECONDS = float(os.environ.get("GDPR_ERASURE_SEGMENT_PATIENCE_SECONDS", 6 * 3600))
# Airflow's pause before a task's retry (a batch retries only the requests that hit errors).
RETRY_DELAY = timedelta(seconds=float(os.environ.get("GDPR_ERASURE_RETRY_DELAY_SECONDS", 60)))
# A claimed request whose run dies is claimable again after this lease (crash recovery).
CLAIM_LEASE = timedelta(seconds=float(os.environ.get("GDPR_ERASURE_LEASE_SECONDS", 6 * 3600)))

# The grid names each mapped group by its batch: first request id and how many more (a group of
# one request, the daily run's usual shape, is just its request id).
BATCH_LABEL = (
    "{{ task.request_ids[0] }}"
    "{% if task.request_ids | length > 1 %} +{{ task.request_ids | length - 1 }}{% endif %}"
)

# Days to keep a completed request's identifiers (0: forget them at completion).
RETENTION_DAYS = "{{ var.value.get('gdpr_retention_days', 0) }}"

with DAG(
    dag_id="gdpr_erasure",
    description="Erase data subjects from Stripe, Twilio and Segment, with proof",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one run drains the table at a time; claiming is still safe if not
    doc_md=__doc__,
    tags=["gdpr", "compliance"],
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": RETRY_DELAY, "retry_exponential_backoff": True},
    on_failure_callback=ComplianceAlertNotifier(),
    params={
        "max_requests": Param(
            1000, type="integer", minimum=1, maximum=100_000, description="Requests this run"
        ),
        "batch_size": Param(
            "auto",
            type=["string", "integer"],
            pattern="^(auto|[1-9][0-9]?|[1-4][0-9]{2}|500)$",
            minimum=1,
            maximum=500,
            description="Requests per mapped group, or auto: one per group in a small run, 50 in a backlog",
        ),
        "per_request_up_to": Param(
            PER_REQUEST_UP_TO,
            type="integer",
            minimum=0,
            maximum=1024,
            description="With batch_size auto: the largest run that gets one mapped group per request",
        ),
        "request_ids": Param([], type="array", items={"type": "string"}, description="Only these requests"),
        "dry_run": Param(False, type="boolean", description="Resolve and report; delete nothing"),
    },
) as dag:
    # A misconfigured system answers "not found" like a person without data: check first.
    preflight = PreflightCheckOperator(task_id="preflight")

    claimed = RequestClaimOperator(
        task_id="claim_requests",
        max_requests="{{ params.max_requests }}",
        batch_size="{{ params.batch_size }}",
        per_request_up_to="{{ params.per_request_up_to }}",
        request_ids="{{ params.request_ids }}",
        lease=CLAIM_LEASE,
    )

    @task_group(group_id="erase_batch", default_args={"map_index_template": BATCH_LABEL})
    def erase_batch(request_ids: list[str]):
        resolve = IdentityResolutionOperator(
            task_id="resolve_identity", request_ids=request_ids, pool="segment_api"
        )

        erase_profile = TwilioMemoryProfileErasureOperator(
            task_id="erase_twilio_profile", request_ids=request_ids, pool="twilio_api"
        )
        erase_history = TwilioHistoryErasureOperator(
            task_id="erase_twilio_history", request_ids=request_ids, pool="twilio_api"
        )
        erase_segment = SegmentRegulationOperator(
            task_id="erase_segment", request_ids=request_ids, pool="segment_api"
        )
        erase_stripe = StripeCustomerErasureOperator(
            task_id="erase_stripe", request_ids=request_ids, pool="stripe_api"
        )

        # The proofs wait in the triggerer, not on a worker (a regulation can take days): said
        # here, as the sensors' default follows [operators] default_deferrable, which Airflow
        # ships false. How often each asks: POLL_SECONDS in gdpr_erasure/proofs/base.py.
        verify_profile = TwilioMemoryProfileDeletedSensor(
            task_id="verify_twilio_profile",
            request_ids=request_ids,
            pool="twilio_api",
            deferrable=True,
            timeout=timedelta(hours=1).total_seconds(),
        )
        verify_segment = SegmentRegulationSensor(
            task_id="verify_segment",
            request_ids=request_ids,
            pool="segment_api",
            deferrable=True,
            patience=SEGMENT_PATIENCE_SECONDS,
            timeout=timedelta(days=2).total_seconds(),
        )
        verify_stripe = StripeCustomerDeletedSensor(
            task_id="verify_stripe",
            request_ids=request_ids,
            pool="stripe_api",
            deferrable=True,
            timeout=timedelta(hours=1).total_seconds(),
        )

        write_ledger_record = LedgerRecordOperator(
            task_id="write_ledger_record",
            request_ids=request_ids,
            max_failures=3,
            retention_days=RETENTION_DAYS,
        )

        resolve >> [erase_profile, erase_history, erase_segment, erase_stripe]
        erase_profile >> verify_profile
        erase_segment >> verify_segment
        erase_stripe >> verify_stripe
        [verify_profile, erase_history, verify_segment, verify_stripe] >> write_ledger_record

    preflight >> claimed
    erased = erase_batch.expand(request_ids=claimed.output)

    forget = IdentifierRetentionOperator(
        task_id="forget_identifiers",
        retention_days=RETENTION_DAYS,
        unresolved_retention_days="{{ var.value.get('gdpr_unresolved_retention_days', 60) }}",
    )

    erased >> forget >> RunSummaryOperator(task_id="summarize_run", request_ids=claimed.output)

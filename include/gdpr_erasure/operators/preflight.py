"""Check every system before the run claims anything."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.preflight import format_table, run_preflight
from gdpr_erasure.store.engine import DEFAULT_CONN_ID


class PreflightFailed(AirflowFailException):
    """A system is misconfigured; nothing was claimed. Retrying cannot fix a connection."""


class PreflightCheckOperator(BaseOperator):
    """Run the read-only checks of ``gdpr-erasure check`` and fail the run if any fails.

    A wrong token, space, store or external id type makes a provider answer "not found", which
    the erasure steps would read as "this person has no data here". Failing here, before
    ``claim_requests``, keeps every request pending with nothing recorded, and the run's failure
    alert names the check that failed. The intake's signing secret is not checked: the intake runs
    in the API server, not in this DAG.

    :param stripe_conn_id: Stripe connection.
    :param twilio_conn_id: Twilio connection.
    :param segment_conn_id: Segment connection.
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        stripe_conn_id: str = StripeHook.default_conn_name,
        twilio_conn_id: str = TwilioHook.default_conn_name,
        segment_conn_id: str = SegmentHook.default_conn_name,
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id
        self.twilio_conn_id = twilio_conn_id
        self.segment_conn_id = segment_conn_id
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> dict[str, int]:
        results = run_preflight(
            compliance_conn_id=self.compliance_conn_id,
            include_intake=False,
            stripe_conn_id=self.stripe_conn_id,
            twilio_conn_id=self.twilio_conn_id,
            segment_conn_id=self.segment_conn_id,
        )
        for line in format_table(results).splitlines():
            self.log.info("%s", line)
        failed = [r for r in results if not r.ok]
        if failed:
            reasons = "; ".join(f"{r.system} {r.name}: {r.detail}" for r in failed)
            raise PreflightFailed(f"{len(failed)} preflight check(s) failed, nothing claimed: {reasons}")
        return {"checks": len(results)}

"""Forget the requesters: identifiers leave the intake table once they are no longer needed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule

from gdpr_erasure.batch import ComplianceStoreMixin, is_dry_run, log_group
from gdpr_erasure.hashing import identifiers_hash, load_hash_key
from gdpr_erasure.store.engine import DEFAULT_CONN_ID
from gdpr_erasure.store.status import CLOSED
from gdpr_erasure.store.types import utcnow


class IdentifierRetentionOperator(ComplianceStoreMixin, BaseOperator):
    """Replace identifiers by their keyed hash where retention is over:

    * completed requests (``completed_with_exemptions`` too: a review of what the policy kept
      needs only the stored Stripe customer ids), ``retention_days`` after completion (default 0:
      ``write_ledger_record`` already did it; this catches a crash between completing and
      forgetting);
    * failed or ``needs_attention`` requests, ``unresolved_retention_days`` after receipt: they
      go to ``needs_attention`` without identifiers, so a stuck request cannot keep a person's
      data forever. Ops then handle it from the audit trail and the hash.

    :param retention_days: days to keep identifiers of completed requests (templated).
    :param unresolved_retention_days: days to keep identifiers of unresolved requests (templated).
    :param compliance_conn_id: Airflow connection of the compliance store.
    """

    template_fields: Sequence[str] = ("retention_days", "unresolved_retention_days")
    ui_color = "#fce4ec"

    def __init__(
        self,
        *,
        retention_days: int | str = 0,
        unresolved_retention_days: int | str = 60,
        compliance_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.retention_days = retention_days
        self.unresolved_retention_days = unresolved_retention_days
        self.compliance_conn_id = compliance_conn_id

    def execute(self, context: Context) -> dict[str, int]:
        if is_dry_run(context):
            self.log.info("dry run: identifiers left as they are")
            return {"forgotten": 0, "given_up": 0}
        now = utcnow()
        unresolved_days = int(self.unresolved_retention_days)
        due = self.store.identifiers_due_for_erasure(
            completed_before=now - timedelta(days=int(self.retention_days)),
            unresolved_before=now - timedelta(days=unresolved_days),
        )
        if not due:
            self.log.info("no identifiers past their retention")
            return {"forgotten": 0, "given_up": 0}
        key = load_hash_key()
        counts = {"forgotten": 0, "given_up": 0}
        with log_group(self.log, f"Forgetting identifiers of {len(due)} request(s)"):
            for request in due:
                digest = identifiers_hash(key, request.identifiers)
                if request.status in CLOSED:
                    counts["forgotten"] += self.store.erase_identifiers(request.id, digest)
                    self.log.info(
                        "%s: %s, identifiers replaced by their keyed hash", request.id, request.status.value
                    )
                else:
                    reason = (
                        f"unresolved after {unresolved_days} days: identifiers removed ({request.last_error})"
                    )
                    counts["given_up"] += self.store.erase_identifiers(
                        request.id, digest, unresolved_reason=reason
                    )
                    self.log.warning("%s: %s", request.id, reason)
        return counts

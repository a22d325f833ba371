"""Find every profile that holds the person's identifiers, in every system."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestScope, is_dry_run
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.pii import mask_identifiers
from gdpr_erasure.store import StepStatus


def _summary(result: steps.Resolution) -> dict[str, int]:
    """Counts only: this is the task's XCom, which must hold no identifier."""
    return {
        "segment_profiles": len(result["segment"]["segment_ids"]),
        "segment_user_ids": len(result["segment"]["user_ids"]),
        "twilio_profiles": len(result["twilio"]["memory_profile_ids"]),
        "stripe_customers": len(result["stripe"]["customer_ids"]),
    }


class IdentityResolutionOperator(ErasureStepOperator):
    """Resolve a request's identifiers to profile ids in Segment, Twilio Memory and Stripe.

    * Segment Profile API: ``external_ids`` of the profiles found by email, phone and user id;
      their ``user_id`` values become the regulation's subjects.
    * Twilio Memory: profile lookup by email and by phone.
    * Stripe: the given ``cus_`` id (if it exists) plus ``customers.list(email=...)``.

    The ids are stored under step ``resolve`` (never in XCom). In a dry run the result is only
    logged and summarised, so the store does not change.

    :param request_ids: the batch of erasure requests (templated).
    :param stripe_conn_id: Stripe connection.
    :param twilio_conn_id: Twilio connection.
    :param segment_conn_id: Segment connection.
    """

    has_side_effects = False
    step_name = steps.RESOLVE
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        stripe_conn_id: str = StripeHook.default_conn_name,
        twilio_conn_id: str = TwilioHook.default_conn_name,
        segment_conn_id: str = SegmentHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id
        self.twilio_conn_id = twilio_conn_id
        self.segment_conn_id = segment_conn_id

    def process(self, request: RequestScope, context: Context) -> dict[str, int]:
        earlier = request.finished_step(steps.RESOLVE)
        if earlier is not None:
            # Re-resolving after the erasures would find less (it is being deleted) and overwrite
            # the ids the audit record needs: a rerun keeps the first resolution.
            request.log.info("already resolved at %s; keeping that result", earlier.updated_at)
            return _summary(steps.result_as(steps.Resolution, earlier))
        ids = request.store.get(request.id).identifiers
        if ids is None:
            raise RuntimeError(f"request {request.id} has no identifiers left to resolve")
        mask_identifiers(ids.email, ids.email_as_given, ids.phone, ids.stripe_customer_id)

        request.log.info("identifiers given: %s", ", ".join(ids.present()))
        segment = self._resolve_segment(ids)
        twilio = self._resolve_twilio(ids)
        stripe = self._resolve_stripe(ids)
        result = steps.Resolution(segment=segment, twilio=twilio, stripe=stripe)
        summary = _summary(result)
        request.log.info(
            "found: %d Segment profile(s) with %d user id(s); %d Twilio Memory profile(s); "
            "%d Stripe customer(s); phone history %s",
            summary["segment_profiles"],
            summary["segment_user_ids"],
            summary["twilio_profiles"],
            summary["stripe_customers"],
            "to search" if twilio["has_phone"] else "not applicable (no phone)",
        )
        if is_dry_run(context):
            request.log.info("dry run: nothing recorded")
        else:
            request.record(steps.RESOLVE, StepStatus.DONE, result)
        return summary

    @staticmethod
    def _email_spellings(ids) -> list[str]:
        """The email as the requester gave it and in lower case: Segment external ids and Stripe
        compare exactly, and Memory only if its store lower-cases (an identity-resolution setting)."""
        return [e for e in dict.fromkeys([ids.email_as_given or ids.email, ids.email]) if e]

    def _resolve_segment(self, ids) -> steps.SegmentIds:
        hook = self.hook(SegmentHook, self.segment_conn_id)
        lookups = [
            *(("email", spelling) for spelling in self._email_spellings(ids)),
            ("phone", ids.phone),
            ("user_id", ids.user_id),
        ]
        segment_ids: list[str] = []
        user_ids: list[str] = [ids.user_id] if ids.user_id else []
        # External ids of the profiles found, by the space's type: one external id belongs to one
        # profile (it is how the Profile API finds it), so an identifier a found profile already
        # lists would find that same profile again and is not looked up twice.
        known: set[tuple[str, str]] = set()
        for id_type, value in lookups:
            if not value or (hook.id_types[id_type], value) in known:
                continue
            profile = hook.get_profile(id_type, value)
            if profile is None:
                continue
            user_ids.extend(profile.ids_of_type("user_id"))
            segment_ids.append(profile.segment_id or f"unknown-{id_type}-match")
            if profile.segment_id:  # without its id, a second match could not be told apart
                known.update((item.get("type"), item.get("id")) for item in profile.external_ids)
        return steps.SegmentIds(segment_ids=sorted(set(segment_ids)), user_ids=sorted(set(user_ids)))

    def _resolve_twilio(self, ids) -> steps.TwilioIds:
        hook = self.hook(TwilioHook, self.twilio_conn_id)
        profiles: list[str] = []
        lookups = [*(("email", spelling) for spelling in self._email_spellings(ids)), ("phone", ids.phone)]
        for id_type, value in lookups:
            if value:
                profiles.extend(hook.lookup_memory_profiles(id_type, value))
        return steps.TwilioIds(memory_profile_ids=sorted(set(profiles)), has_phone=bool(ids.phone))

    def _resolve_stripe(self, ids) -> steps.StripeIds:
        """Stripe customers to erase, and apart from them the given id if it is already gone.

        ``customer_ids`` are live customers only (the given id if it is one, and every exact
        email match). A given id that reads as gone is listed under ``absent_at_resolve`` with
        the answer that showed it, never among the customers to erase: ``never_existed`` for a
        404 on its path (Stripe never knew it, or a server that answers deleted customers with
        404 deleted it before: either way not our erasure), ``deleted_before_resolve`` for the
        ``deleted: true`` object. Errors (401, a wrong ``api_base``) fail the step instead.
        """
        hook = self.hook(StripeHook, self.stripe_conn_id)
        by_email: dict[str, str] = {}
        if ids.email:
            # Exact, case-sensitive match: try the spelling the requester gave, then lower case.
            for spelling in self._email_spellings(ids):
                for customer in hook.list_customers_by_email(spelling):
                    by_email.setdefault(customer["id"], "email")
        found: dict[str, str] = {}
        absent: dict[str, steps.AbsentCustomer] = {}
        given = ids.stripe_customer_id
        if given:
            # A list holds live customers only (deleted ones are never listed), so a given id the
            # email listing returned is present: retrieving it would only say so again.
            presence = "present" if given in by_email else hook.customer_presence(given)
            if presence == "present":
                found[given] = "given"
            else:
                absent[given] = steps.AbsentCustomer(
                    outcome="never_existed" if presence == "not_found" else "deleted_before_resolve",
                    evidence=presence,
                    checked_at=datetime.now(UTC).isoformat(),
                )
        for customer_id, how in by_email.items():
            found.setdefault(customer_id, how)
        return steps.StripeIds(customer_ids=sorted(found), matched_by=found, absent_at_resolve=absent)

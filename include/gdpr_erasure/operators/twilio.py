"""Erase the person from Twilio: the Memory profile(s), then communication history."""

from __future__ import annotations

from typing import Any, Literal

from airflow.sdk import Context

from gdpr_erasure import steps
from gdpr_erasure.batch import RequestLog, RequestScope
from gdpr_erasure.hooks.twilio import DIRECTIONS, TwilioHook
from gdpr_erasure.operators.base import ErasureStepOperator
from gdpr_erasure.pii import mask_identifiers
from gdpr_erasure.store import StepStatus

PROGRESS_EVERY = 200


class TwilioMemoryProfileErasureOperator(ErasureStepOperator):
    """Delete the Twilio Memory profile(s) found by ``resolve_identity``.

    Memory deletes asynchronously (202); ``TwilioMemoryProfileDeletedSensor`` proves it afterwards.

    :param request_ids: the batch of erasure requests (templated).
    :param twilio_conn_id: Twilio connection.
    """

    ui_color = "#fde0dc"
    step_name = steps.TWILIO_PROFILE

    def __init__(self, *, twilio_conn_id: str = TwilioHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.twilio_conn_id = twilio_conn_id

    def process(self, request: RequestScope, context: Context) -> dict[str, int]:
        earlier = request.finished_step(steps.TWILIO_PROFILE, proof=steps.VERIFY_TWILIO_PROFILE)
        if earlier is not None:
            request.log.info("Twilio profile step already %s", earlier.status.value)
            return {"rerun": 1}
        profile_ids = request.resolved()["twilio"]["memory_profile_ids"]
        if not profile_ids:
            request.record(
                steps.TWILIO_PROFILE, StepStatus.SKIPPED, steps.TwilioProfileErasure(reason="no profile")
            )
            request.log.info("no Twilio Memory profile: nothing to delete")
            return {"deleted": 0, "already_absent": 0}
        hook = self.hook(TwilioHook, self.twilio_conn_id)
        outcomes = {profile_id: hook.delete_memory_profile(profile_id) for profile_id in profile_ids}
        counts = {"deleted": sum(o == "deleted" for o in outcomes.values())}
        counts["already_absent"] = len(outcomes) - counts["deleted"]
        request.record(
            steps.TWILIO_PROFILE,
            StepStatus.DONE if counts["deleted"] else StepStatus.ALREADY_ABSENT,
            steps.TwilioProfileErasure(profile_ids=profile_ids, outcomes=outcomes),
        )
        request.log.info(
            "Twilio Memory: deletion accepted for %d profile(s), %d already absent: %s",
            counts["deleted"],
            counts["already_absent"],
            ", ".join(profile_ids),
        )
        return counts


class TwilioHistoryErasureOperator(ErasureStepOperator):
    """Delete messages to and from the person's phone, their calls with recordings and
    transcriptions, and their Conversations.

    Everything is listed first and then deleted, so a rerun after a crash lists only what is
    left; a resource deleted in between answers 404 and counts as already absent. The counts in
    the audit record are "found by the first attempt" minus "left at the end". The proof is a
    second inventory: each list query that found something (messages to, messages from, calls
    to, calls from, the person's participations per Conversation Service and per lookup) is asked
    again and must come back empty; a query that found nothing is not asked twice, its empty
    answer in this attempt already proves its part.

    :param request_ids: the batch of erasure requests (templated).
    :param twilio_conn_id: Twilio connection.
    :param conversations: ``delete_conversation`` removes the whole conversation (right for
        one-to-one business messaging, where each conversation is one customer's thread);
        ``remove_participant`` only removes the person from it (group conversations).
    """

    ui_color = "#fde0dc"
    step_name = steps.TWILIO_HISTORY

    def __init__(
        self,
        *,
        twilio_conn_id: str = TwilioHook.default_conn_name,
        conversations: Literal["delete_conversation", "remove_participant"] = "delete_conversation",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.twilio_conn_id = twilio_conn_id
        self.conversations = conversations

    def process(self, request: RequestScope, context: Context) -> dict[str, int]:
        earlier = request.finished_step(steps.TWILIO_HISTORY)
        if earlier is not None:
            request.log.info("Twilio history already %s", earlier.status.value)
            return steps.result_as(steps.TwilioHistoryErasure, earlier).get("deleted", {})
        ids = request.store.get(request.id).identifiers
        phone = ids.phone if ids else None
        # Chat participants are found by identity, which apps usually set to an email or user id.
        identities = (
            [v for v in dict.fromkeys([ids.email, ids.email_as_given, ids.user_id]) if v] if ids else []
        )
        if not phone and not identities:
            request.record(
                steps.TWILIO_HISTORY, StepStatus.SKIPPED, steps.TwilioHistoryErasure(reason="no phone")
            )
            request.log.info("no phone or chat identity: no Twilio history to search")
            return {}
        mask_identifiers(phone, *identities)
        hook = self.hook(TwilioHook, self.twilio_conn_id)
        # Conversations live in Conversation Services; the default one is only one of them. The
        # list is the account's, so the requests of a batch share one listing (at most a minute old).
        services = hook.conversation_services()

        queries = _queries(phone, identities, services)
        listing, answered = self._inventory(hook, queries)
        # The first attempt's inventory is kept: after a crash the rerun lists only what is left,
        # and "found then" minus "left now" is exactly what the pipeline erased.
        found = steps.result_as(steps.TwilioHistoryErasure, request.step(steps.TWILIO_HISTORY)).get("found")
        if not found:
            found = {kind: len(items) for kind, items in listing.items()}
            request.record(steps.TWILIO_HISTORY, StepStatus.PENDING, steps.TwilioHistoryErasure(found=found))
        request.log.info("found %s; to delete now %s", found, {k: len(v) for k, v in listing.items()})

        # Children first: once a call is gone its recordings can no longer be listed by CallSid.
        log = request.log
        self._delete_all(log, hook.delete_message, listing["messages"], "message")
        self._delete_all(log, hook.delete_transcription, listing["transcriptions"], "transcription")
        self._delete_all(log, hook.delete_recording, listing["recordings"], "recording")
        self._delete_all(log, hook.delete_call, listing["calls"], "call")
        # Each item is (service, conversation) or (service, conversation, participant).
        delete = (
            hook.delete_conversation
            if self.conversations == "delete_conversation"
            else hook.delete_participant
        )
        self._delete_all(log, lambda where: delete(*where), listing["conversations"], "conversation")

        # The proof: every query that listed something is asked again and must come back empty.
        # A query that listed nothing proved its part empty a moment ago, in this attempt, and
        # nothing was deleted there to prove: asking it again would only repeat that answer.
        left = {kind: len(items) for kind, items in self._inventory(hook, answered)[0].items()}
        erased = {kind: found[kind] - left.get(kind, 0) for kind in found}
        clean = not any(left.values())
        request.record(
            steps.TWILIO_HISTORY,
            StepStatus.DONE if clean else StepStatus.FAILED,
            steps.TwilioHistoryErasure(
                found=found,
                deleted=erased,
                remaining_after=left,
                conversation_services_searched=len(services),
            ),
        )
        request.log.info("Twilio history: erased %s; left afterwards %s", erased, left)
        if not clean:
            raise RuntimeError(f"request {request.id}: Twilio still lists {left} after the erasure")
        return erased

    def _inventory(self, hook: TwilioHook, queries: list[Query]) -> tuple[dict[str, list], list[Query]]:
        """SIDs of everything that holds the person, per kind, from ``queries`` (see
        :func:`_queries`), and the queries that listed something. Conversations are tuples that
        start with the service that owns them (the only path whose 404 means gone); recordings
        are listed per call found, transcriptions per recording found."""
        answers = {query: _ask(hook, query) for query in queries}
        calls = _unique(sid for (kind, *_), found in answers.items() if kind == "calls" for sid in found)
        recordings = [rec for call in calls for rec in hook.list_recording_sids(call)]
        participations = [
            p for (kind, *_), found in answers.items() if kind == "conversations" for p in found
        ]
        if self.conversations == "delete_conversation":
            conversations: list = list(
                dict.fromkeys((p["chat_service_sid"], p["conversation_sid"]) for p in participations)
            )
        else:
            conversations = [
                (p["chat_service_sid"], p["conversation_sid"], p["participant_sid"]) for p in participations
            ]
        listing = {
            "messages": _unique(
                sid for (kind, *_), found in answers.items() if kind == "messages" for sid in found
            ),
            "calls": calls,
            "recordings": recordings,
            "transcriptions": [t for rec in recordings for t in hook.list_transcription_sids(rec)],
            "conversations": conversations,
        }
        return listing, [query for query, found in answers.items() if found]

    @staticmethod
    def _delete_all(log: RequestLog, delete, sids: list, kind: str) -> int:
        deleted = 0
        for done, sid in enumerate(sids, start=1):
            deleted += delete(sid) == "deleted"
            if done % PROGRESS_EVERY == 0:
                log.progress("%s: %d/%d processed", kind, done, len(sids))
        if sids:  # the inventory line already says which kinds had nothing
            log.info(
                "%s: %d listed, %d deleted, %d already gone", kind, len(sids), deleted, len(sids) - deleted
            )
        return deleted


#: One list query of the inventory: ``("messages" | "calls", direction, phone)`` or
#: ``("conversations", service SID, "address" | "identity", value)``. Held in memory only: it
#: holds the person's identifiers.
Query = tuple[str, ...]


def _queries(phone: str | None, identities: list[str], services: list[str]) -> list[Query]:
    """Every list query that finds the person's history: messages and calls to and from the phone,
    and their participations by phone (messaging address) and chat identity in every service."""
    queries: list[Query] = []
    if phone:
        queries += [(kind, direction, phone) for kind in ("messages", "calls") for direction in DIRECTIONS]
    lookups = [("address", phone)] if phone else []
    lookups += [("identity", identity) for identity in identities]
    queries += [("conversations", service, how, value) for how, value in lookups for service in services]
    return queries


def _ask(hook: TwilioHook, query: Query) -> list:
    """The answer to one query: SIDs, or participations for ``conversations``."""
    kind = query[0]
    if kind == "messages":
        return hook.list_message_sids_by_direction(query[2], query[1])
    if kind == "calls":
        return hook.list_call_sids_by_direction(query[2], query[1])
    _, service, how, value = query
    return hook.list_participant_conversations(**{how: value}, chat_service_sids=[service])


def _unique(items) -> list:
    """In first-seen order: a message to oneself is listed by both directions."""
    return list(dict.fromkeys(items))

"""One trigger that proves the deletions of a whole batch of requests.

A sensor task works on a batch of requests; rather than one trigger per request, it defers to
this trigger, which holds one provider check per request (each a :class:`PollUntilDoneTrigger`
in its serialized form) and polls those still open, a few at a time, until every request has
an answer or the deadline passes. One event then reports each request's outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk.module_loading import import_string

# Triggers have no airflow.sdk home in Airflow 3.3; providers import them from here too.
from airflow.triggers.base import BaseTrigger, TriggerEvent

from gdpr_erasure.triggers.base import PollUntilDoneTrigger


class BatchProofTrigger(BaseTrigger):
    """Poll a provider check per request until each is settled.

    Each request ends ``done``, ``failed`` (the provider reported the deletion failed),
    ``error`` (the check itself kept failing, after the hook's retries) or, when ``deadline``
    passes first, ``pending`` (handed over to a later run). The event is
    ``{"status": "settled", "outcomes": {request_id: {"state", "evidence"}}, "polls": n}``.

    :param checks: request id -> ``[classpath, kwargs]`` of a :class:`PollUntilDoneTrigger`.
    :param poll_interval: seconds between rounds of checks.
    :param deadline: epoch seconds after which open requests are reported ``pending``.
    :param max_concurrency: checks running at the same time (each in a thread).
    """

    def __init__(
        self,
        checks: dict[str, list[Any]],
        poll_interval: float = 10.0,
        deadline: float | None = None,
        max_concurrency: int = 8,
    ) -> None:
        super().__init__()
        self.checks = {rid: [classpath, dict(kwargs)] for rid, (classpath, kwargs) in checks.items()}
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_concurrency = max_concurrency

    @classmethod
    def of(cls, triggers: dict[str, PollUntilDoneTrigger], **kwargs: Any) -> BatchProofTrigger:
        return cls({rid: list(trigger.serialize()) for rid, trigger in triggers.items()}, **kwargs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "checks": self.checks,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_concurrency": self.max_concurrency,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        children = {rid: import_string(path)(**kwargs) for rid, (path, kwargs) in self.checks.items()}
        limit = asyncio.Semaphore(self.max_concurrency)
        outcomes: dict[str, dict[str, Any]] = {}
        last: dict[str, dict[str, Any]] = {}
        polls = 0
        while True:
            polls += 1
            open_ids = [rid for rid in children if rid not in outcomes]
            answers = await asyncio.gather(*(self._check(limit, children[rid]) for rid in open_ids))
            for rid, (state, evidence) in zip(open_ids, answers, strict=True):
                if state == "waiting":
                    last[rid] = evidence
                else:
                    outcomes[rid] = {"state": state, "evidence": evidence}
            still_open = [rid for rid in children if rid not in outcomes]
            if not still_open:
                break
            if self.deadline is not None and time.time() + self.poll_interval > self.deadline:
                for rid in still_open:
                    outcomes[rid] = {"state": "pending", "evidence": last.get(rid, {})}
                break
            self.log.info(
                "check %d: %d of %d proven or settled; %d still open",
                polls,
                len(outcomes),
                len(children),
                len(still_open),
            )
            await asyncio.sleep(self.poll_interval)
        yield TriggerEvent({"status": "settled", "outcomes": outcomes, "polls": polls})

    @staticmethod
    async def _check(limit: asyncio.Semaphore, check: PollUntilDoneTrigger) -> tuple[str, dict[str, Any]]:
        async with limit:
            try:
                return await asyncio.to_thread(check.check)
            except Exception as exc:  # hook errors are already scrubbed of identifiers
                return "error", {"reason": f"{type(exc).__name__}: {exc}"}

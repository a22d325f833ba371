"""A trigger that polls a provider until a deletion is proven.

Triggers run in the triggerer, not on a worker, so a sensor that defers to one holds no worker
slot while Segment takes days or Stripe a few seconds. The hooks are synchronous (official
SDKs), so each check runs in a thread; the event loop stays free for other triggers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

# Triggers have no airflow.sdk home in Airflow 3.3; providers import them from here too.
from airflow.triggers.base import BaseTrigger, TriggerEvent


class PollUntilDoneTrigger(BaseTrigger):
    """Call :meth:`check` every ``poll_interval`` seconds until it reports done or failed.

    :meth:`check` returns ``(state, evidence)``: ``"done"`` fires a success event, ``"failed"``
    an error event (the sensor fails with the reason), ``"waiting"`` polls again. Errors from
    the provider that survive the hook's retries are reported as an error event rather than
    crashing the triggerer. At ``deadline`` (if given) a ``pending`` event hands the request
    over to a later run instead of failing it: slow processors (Segment can take days) are not
    failures. Airflow's defer timeout stays the hard stop.

    :param poll_interval: seconds between checks.
    :param deadline: epoch seconds after which to stop waiting with a ``pending`` event.
    """

    def __init__(self, poll_interval: float = 10.0, deadline: float | None = None) -> None:
        super().__init__()
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self.serialize_kwargs()

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"poll_interval": self.poll_interval, "deadline": self.deadline}

    def check(self) -> tuple[str, dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        polls = 0
        while True:
            polls += 1
            try:
                state, evidence = await asyncio.to_thread(self.check)
            except Exception as exc:  # hook errors are already scrubbed of identifiers
                yield TriggerEvent(
                    {"status": "error", "message": f"{type(exc).__name__}: {exc}", "polls": polls}
                )
                return
            if state == "done":
                yield TriggerEvent({"status": "success", "evidence": evidence, "polls": polls})
                return
            if state == "failed":
                yield TriggerEvent(
                    {
                        "status": "failed",
                        "evidence": evidence,
                        "polls": polls,
                        "message": evidence.get("reason", ""),
                    }
                )
                return
            if self.deadline is not None and time.time() + self.poll_interval > self.deadline:
                yield TriggerEvent({"status": "pending", "evidence": evidence, "polls": polls})
                return
            self.log.info("not yet proven after %d check(s): %s", polls, evidence.get("summary", state))
            await asyncio.sleep(self.poll_interval)

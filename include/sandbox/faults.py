"""Fault injection knobs, one set per emulated API (``stripe``, ``twilio``, ``segment``).

A faulted call is answered before its handler runs, so it never changes state: exactly like a
real rate-limited or failed request, which the service did not process. Decisions come from a
seeded ``random.Random`` so that a run with the same seed and request order is reproducible.

Answer knobs (:data:`ANSWER_KNOBS`) are not failures: they choose which of several real-world
answers an API gives, e.g. ``stripe:deleted_customer_answer=bare_404`` for a Stripe-compatible
server that answers a deleted customer with a bare 404. They are set and cleared like the others.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any

APIS = ("stripe", "twilio", "segment")

#: Knobs that choose an answer rather than inject a failure: API -> knob -> allowed values, the
#: first being the default (the real service's behaviour).
#:
#: ``stripe:deleted_customer_answer``: how a deleted customer answers ``GET``, ``POST`` and
#: ``DELETE /v1/customers/{id}``. ``stub`` (Stripe): ``GET`` gives ``{id, object, deleted: true}``,
#: the others a 404 ``resource_missing``; ``not_found``: every call a 404 ``resource_missing``;
#: ``bare_404``: every call a 404 ``invalid_request_error`` without ``code`` (some
#: Stripe-compatible servers).
ANSWER_KNOBS: dict[str, dict[str, tuple[str, ...]]] = {
    "stripe": {"deleted_customer_answer": ("stub", "not_found", "bare_404")},
}


def _default_answers(api: str) -> dict[str, str]:
    return {knob: values[0] for knob, values in ANSWER_KNOBS.get(api, {}).items()}


def _set_answer(answers: dict[str, str], api: str, knob: str, value: Any) -> None:
    allowed = ANSWER_KNOBS[api][knob]
    if value not in allowed:
        raise ValueError(f"knob {api}:{knob} is one of {', '.join(allowed)}, got {value!r}")
    answers[knob] = value


@dataclass
class FaultKnobs:
    """The knobs of one API. Rates are fractions of calls, latencies are milliseconds."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_5xx: float = 0.0

    def set(self, knob: str, value: Any) -> None:
        """Set one knob after checking its name and range; raises ``ValueError`` otherwise."""
        if knob not in {f.name for f in fields(self)}:
            raise ValueError(f"unknown fault knob {knob!r} (known: {', '.join(knob_names())})")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"fault knob {knob!r} needs a number, got {value!r}") from None
        if isinstance(value, bool) or number != number or number < 0:
            raise ValueError(f"fault knob {knob!r} must be a non-negative number")
        if knob.startswith("rate_") and number > 1:
            raise ValueError(f"fault knob {knob!r} is a fraction between 0 and 1")
        setattr(self, knob, number)


def knob_names() -> list[str]:
    return [f.name for f in fields(FaultKnobs)]


class Faults:
    """The fault configuration of every API plus the random generator that applies it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"faults-{seed}")
        self.knobs = {api: FaultKnobs() for api in APIS}
        self.answers = {api: _default_answers(api) for api in APIS}

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {api: {**asdict(knobs), **self.answers[api]} for api, knobs in self.knobs.items()}

    def answer(self, api: str, knob: str) -> str:
        """The current value of an answer knob (see :data:`ANSWER_KNOBS`)."""
        return self.answers[api][knob]

    def apply_spec(self, spec: str) -> None:
        """Apply one command-line spec such as ``stripe:rate_429=0.2``."""
        api, sep, rest = spec.partition(":")
        knob, eq, value = rest.partition("=")
        if not sep or not eq:
            raise ValueError(f"fault {spec!r} is not of the form API:KNOB=VALUE")
        api, knob, value = api.strip(), knob.strip(), value.strip()
        if knob in ANSWER_KNOBS.get(api, {}):
            _set_answer(self.answers[api], api, knob, value)
        else:
            self._knobs_of(api).set(knob, value)

    def replace(self, config: Any) -> None:
        """Replace the whole configuration with ``config`` (``{"stripe": {"rate_429": 0.2}}``).

        APIs or knobs that are not named go back to their defaults. Nothing changes when the
        configuration is invalid.
        """
        if not isinstance(config, dict):
            raise ValueError("the fault configuration must be a JSON object keyed by API")
        fresh = {api: FaultKnobs() for api in APIS}
        answers = {api: _default_answers(api) for api in APIS}
        for api, knobs in config.items():
            if api not in fresh:
                raise ValueError(f"unknown API {api!r} (known: {', '.join(APIS)})")
            if not isinstance(knobs, dict):
                raise ValueError(f"the knobs of {api!r} must be a JSON object")
            for knob, value in knobs.items():
                if knob in answers[api]:
                    _set_answer(answers[api], api, knob, value)
                else:
                    fresh[api].set(knob, value)
        self.knobs, self.answers = fresh, answers

    def _knobs_of(self, api: str) -> FaultKnobs:
        if api not in self.knobs:
            raise ValueError(f"unknown API {api!r} (known: {', '.join(APIS)})")
        return self.knobs[api]

    def delay_seconds(self, api: str) -> float:
        """How long to hold this call: the fixed latency plus a uniform random jitter."""
        knobs = self.knobs[api]
        jitter = self.rng.uniform(0, knobs.latency_jitter_ms) if knobs.latency_jitter_ms else 0.0
        return (knobs.latency_ms + jitter) / 1000

    def roll(self, api: str) -> int | None:
        """The HTTP status of an injected failure for this call, or ``None`` to serve it."""
        knobs = self.knobs[api]
        if knobs.rate_429 and self.rng.random() < knobs.rate_429:
            return 429
        if knobs.rate_5xx and self.rng.random() < knobs.rate_5xx:
            return self.rng.choice((500, 503))
        return None

    def retry_after(self, api: str) -> str:
        """The ``Retry-After`` header value: whole seconds, rounded up."""
        seconds = self.knobs[api].retry_after
        return str(int(seconds) + (0 if seconds == int(seconds) else 1))

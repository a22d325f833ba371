"""Provider limits, one set per emulated API (``stripe``, ``twilio``, ``segment``): a request rate
(token bucket) and a concurrency limit, like the real services enforce (docs/api-notes.md, "Rate and
concurrency limits").

Unlike the fault knobs, which refuse a random fraction of calls, a limit refuses exactly the calls
over it, so a benchmark sees the ceiling a provider puts on the pipeline. Nothing ever waits: a call
over a limit is answered at once with the provider's 429 (see :mod:`sandbox.server`), and counted.
No limit is set unless asked for (``--limit stripe:rate=25``, ``PUT /_sandbox/limits``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from sandbox.faults import APIS

#: Why a call was refused: over the request rate, or over the concurrent requests allowed.
RATE = "rate"
CONCURRENCY = "concurrency"


@dataclass
class LimitConfig:
    """The limits of one API; ``None`` is no limit.

    :param rate: requests per second (the bucket's refill rate).
    :param burst: the bucket's size, i.e. how many calls may arrive at once; defaults to ``rate``.
    :param concurrency: how many calls may be in flight at once.
    """

    rate: float | None = None
    burst: float | None = None
    concurrency: int | None = None

    def set(self, name: str, value: Any) -> None:
        """Set one limit after checking its name and value; raises ``ValueError`` otherwise."""
        if name not in {f.name for f in fields(self)}:
            raise ValueError(f"unknown limit {name!r} (known: {', '.join(f.name for f in fields(self))})")
        if value is None:
            setattr(self, name, None)
            return
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"limit {name!r} needs a number, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
            raise ValueError(f"limit {name!r} must be a positive number")
        if name == "concurrency":
            if number != int(number):
                raise ValueError(f"limit {name!r} must be a whole number")
            setattr(self, name, int(number))
        else:
            setattr(self, name, number)


@dataclass
class LimitCounts:
    """What one API's limiter did since its limits were last set."""

    admitted: int = 0
    refused_rate: int = 0
    refused_concurrency: int = 0
    peak_concurrency: int = 0


class TokenBucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second; a call takes one.

    Not locked itself: :class:`Limits` holds its lock around every use.

    :param rate: tokens added per second.
    :param burst: the most tokens the bucket holds (it starts full).
    :param clock: a monotonic clock in seconds.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def try_take(self) -> bool:
        """Take one token if there is one; never waits."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def seconds_until_token(self) -> float:
        """How long until a token is free again (0 when one is)."""
        self._refill()
        return max(0.0, (1 - self.tokens) / self.rate)


class Limits:
    """The limits of every API, their token buckets, calls in flight and counts.

    :param clock: a monotonic clock in seconds (tests may pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.configs = {api: LimitConfig() for api in APIS}
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self.buckets: dict[str, TokenBucket | None] = {}
        for api, config in self.configs.items():
            if config.rate is None:
                self.buckets[api] = None
            else:
                burst = max(1.0, config.burst if config.burst is not None else config.rate)
                self.buckets[api] = TokenBucket(config.rate, burst, self.clock)
        self.in_flight = dict.fromkeys(APIS, 0)
        self.counts = {api: LimitCounts() for api in APIS}

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The limits of every API (``None`` where there is none)."""
        return {api: asdict(config) for api, config in self.configs.items()}

    def counts_dict(self) -> dict[str, dict[str, int]]:
        """Per API: calls admitted, refused for rate, refused for concurrency, peak in flight."""
        with self._lock:
            return {api: asdict(counts) for api, counts in self.counts.items()}

    def in_flight_dict(self) -> dict[str, int]:
        """Per API: calls admitted and not yet answered, now (a benchmark samples it)."""
        with self._lock:
            return dict(self.in_flight)

    def apply_spec(self, spec: str) -> None:
        """Apply one command-line spec: ``stripe:rate=25``, ``twilio:concurrency=10`` or several
        limits of one API at once, ``stripe:rate=100,burst=100,concurrency=20``.

        :raises ValueError: naming the spec, when it is not of that form or a value is wrong.
        """
        api, sep, rest = spec.partition(":")
        api = api.strip()
        try:
            if not sep or not rest.strip():
                raise ValueError("not of the form API:LIMIT=VALUE[,LIMIT=VALUE]")
            if api not in self.configs:
                raise ValueError(f"unknown API {api!r} (known: {', '.join(APIS)})")
            config = LimitConfig(**asdict(self.configs[api]))
            for part in rest.split(","):
                name, eq, value = part.partition("=")
                if not eq:
                    raise ValueError("not of the form API:LIMIT=VALUE[,LIMIT=VALUE]")
                config.set(name.strip(), value.strip())
        except ValueError as exc:
            raise ValueError(f"--limit {spec!r}: {exc}") from None
        with self._lock:
            self.configs[api] = config
            self._reset_runtime()

    def replace(self, config: Any) -> None:
        """Replace every limit with ``config`` (``{"stripe": {"rate": 25, "concurrency": 5}}``) and
        zero the counts. APIs or limits not named have none. Nothing changes when it is invalid.
        """
        if not isinstance(config, dict):
            raise ValueError("the limits must be a JSON object keyed by API")
        fresh = {api: LimitConfig() for api in APIS}
        for api, limits in config.items():
            if api not in fresh:
                raise ValueError(f"unknown API {api!r} (known: {', '.join(APIS)})")
            if not isinstance(limits, dict):
                raise ValueError(f"the limits of {api!r} must be a JSON object")
            for name, value in limits.items():
                fresh[api].set(name, value)
        with self._lock:
            self.configs = fresh
            self._reset_runtime()

    def admit(self, api: str) -> tuple[str | None, float]:
        """Try to start one call to ``api``.

        :return: ``(None, 0)`` when admitted (the caller must :meth:`release` it when done), else
            ``(RATE or CONCURRENCY, seconds until a retry could pass)``.
        """
        with self._lock:
            config, counts = self.configs[api], self.counts[api]
            if config.concurrency is not None and self.in_flight[api] >= config.concurrency:
                counts.refused_concurrency += 1
                return CONCURRENCY, 1.0
            bucket = self.buckets[api]
            if bucket is not None and not bucket.try_take():
                counts.refused_rate += 1
                return RATE, bucket.seconds_until_token()
            self.in_flight[api] += 1
            counts.admitted += 1
            counts.peak_concurrency = max(counts.peak_concurrency, self.in_flight[api])
            return None, 0.0

    def release(self, api: str) -> None:
        """End one admitted call to ``api``."""
        with self._lock:
            self.in_flight[api] = max(0, self.in_flight[api] - 1)


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))

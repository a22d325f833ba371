"""Client-side limits shared by every process that calls one provider account (issue 16).

Two budgets per (provider, account): a **rate** (calls per second, a moving window) and a
**concurrency** limit (calls in flight, Twilio's only documented limit, error 20429). Both sit
below the provider's own limit (``fraction`` of it, docs/api-notes.md "Rate and concurrency
limits"), and the rate adapts: a 429 halves it, sustained success adds it back (AIMD).

What the maintained ``limits`` library does, and we use: the moving-window counting, atomic in
Redis (a Lua script over a list of timestamps) and in memory, and the window's reset time, which
is what :meth:`ProviderLimiter.acquire` sleeps until (it never spins). Its timestamps are the
callers' clocks, so workers on several hosts need synchronised clocks (NTP's milliseconds only
shift the window by as much).

What is ours, and why:

* **The adaptive rate.** ``limits`` takes a fixed limit per call; the shared effective rate, its
  halving and its recovery live next to the window (Redis keys, a SQLite table, or a process's
  own state).
  The window's key leaves the amount out (:class:`_AdaptiveRate`), so a rate change keeps the
  calls already made in the window instead of starting a fresh, empty one.
* **The concurrency leases.** ``limits`` counts events in time, not calls in flight. Leases
  that expire (a Redis sorted set scored by Redis server time; a SQLite table) let a killed
  process lose its slot after ``lease_ttl`` instead of leaking it.
* **Waiting.** ``limits`` only answers yes/no; the sleep until the window frees is ours. The
  window frees a burst at once, and which waiting process takes it is by lot (a few random
  milliseconds on each wake), so no process is always first.

Where budgets live (``$GDPR_ERASURE_LIMITER_URL``): ``redis://...`` shares them across hosts
(compose sets it to its Redis); unset, a SQLite file in the Airflow home
(:mod:`.limiter_sqlite`, a ``limits`` storage of ours, since ``limits`` has no storage that
processes share without a server) shares them among the processes of one host, which is what
the LocalExecutor runs; ``memory://`` keeps them in one process (tests).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import limits
from limits.errors import ConfigurationError, StorageError
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from gdpr_erasure.hooks.errors import ApiConfigurationError, PermanentApiError, TransientApiError
from gdpr_erasure.hooks.limiter_sqlite import SQLiteState, SQLiteStorage

T = TypeVar("T")
log = logging.getLogger(__name__)

# Documented limits (docs/api-notes.md, "Rate and concurrency limits", checked 2026-11-29):
# Stripe https://docs.stripe.com/rate-limits 25 operations/s in a sandbox (test mode), 100/s live;
# Segment Profile API https://segment.com/docs/profiles/profile-api-limits/ 100 requests/s per space;
# Twilio https://www.twilio.com/docs/api/errors/20429 a per-account concurrency limit with no
# published number, so we stay well below the third-party figure of 100 (not verified).
DOCUMENTED_LIMITS: dict[str, dict[str, float | None]] = {
    "stripe_test": {"rate_per_second": 25, "concurrency": None},
    "stripe_live": {"rate_per_second": 100, "concurrency": None},
    "segment": {"rate_per_second": 100, "concurrency": None},
    "twilio": {"rate_per_second": None, "concurrency": 10},
}
DEFAULT_FRACTION = 0.8
KEY_PREFIX = "gdpr_erasure:limiter"
#: Where budgets are shared: ``redis://host:port/db`` (compose sets it), else ``memory://``.
LIMITER_URL_ENV = "GDPR_ERASURE_LIMITER_URL"
#: Longest a call waits for budget before it counts as a transient error (the retry loop's).
DEFAULT_BUDGET_WAIT = 60.0
#: Seconds of random delay added to a rate wait, so waiters share freed calls fairly.
WAKE_JITTER = 0.005
#: What a failing shared storage raises: the call fails transient, not unlimited.
_STORAGE_ERRORS = (RedisError, StorageError, sqlite3.Error)
_TUNING = ("min_rate_per_second", "recover_after", "recover_step", "decrease_cooldown", "lease_ttl")
#: The connection extras the budget reads (:meth:`LimiterConfig.from_extras`).
LIMIT_EXTRAS = ("rate_per_second", "concurrency", "fraction", *_TUNING)


class LimiterTimeout(TimeoutError):
    """No budget came free within the time the caller was willing to wait."""


@dataclass(frozen=True)
class LimiterConfig:
    """
    The budget of one provider account.

    :param rate_per_second: ceiling of the adaptive rate (already scaled by ``fraction``), or None
    :param concurrency: calls in flight at once (already scaled), or None for no limit
    :param min_rate_per_second: the floor AIMD never halves below
    :param recover_after: successes needed for one additive step back up
    :param recover_step: calls per second added per step
    :param decrease_cooldown: seconds in which further 429s do not halve again (one burst of
        429s answers one overload, not ten)
    :param lease_ttl: seconds a concurrency slot lives unless released (a killed holder's slot
        frees after this)
    """

    rate_per_second: float | None
    concurrency: int | None
    min_rate_per_second: float = 1.0
    recover_after: int = 20
    recover_step: float = 1.0
    decrease_cooldown: float = 1.0
    lease_ttl: float = 120.0

    @classmethod
    def from_extras(cls, provider: str, extras: Mapping[str, Any] | None = None) -> LimiterConfig:
        """
        Build the budget from a connection's extras, defaulting to a fraction of the documented limit.

        ``rate_per_second`` and ``concurrency`` in the extras are the provider's limits (for an
        account with a raised limit); ``fraction`` (default 0.8) of them is what we use.

        :param provider: one of :data:`DOCUMENTED_LIMITS` (``stripe_test``, ``stripe_live``, ...)
        :param extras: the connection's extras, or None
        """
        # A connection form saves its empty fields as "" or null: those are unset.
        extras = {k: v for k, v in (extras or {}).items() if v not in (None, "")}
        if provider not in DOCUMENTED_LIMITS:
            raise ValueError(
                f"No documented limits for provider {provider!r}; pass one of {sorted(DOCUMENTED_LIMITS)}"
            )
        documented = DOCUMENTED_LIMITS[provider]
        fraction = _number(extras, "fraction", DEFAULT_FRACTION)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        rate = _number(extras, "rate_per_second", documented["rate_per_second"])
        concurrency = _number(extras, "concurrency", documented["concurrency"])
        for name, value in (("rate_per_second", rate), ("concurrency", concurrency)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value}")
        optional = {k: type(getattr(cls, k))(_number(extras, k, None)) for k in _TUNING if k in extras}
        return cls(
            rate_per_second=None if rate is None else rate * fraction,
            concurrency=None if concurrency is None else max(1, math.floor(concurrency * fraction)),
            **optional,
        )


def _number(extras: Mapping[str, Any], name: str, default: float | None) -> float | None:
    """A number from the extras (the form saves strings); ``default`` when absent."""
    if name not in extras:
        return default
    try:
        return float(extras[name])
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {extras[name]!r}") from None


class _AdaptiveRate(limits.RateLimitItemPerSecond):
    """A per-second limit whose window key leaves out the amount, so changing the rate keeps the window."""

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        return "/".join([self.namespace, *(str(i) for i in identifiers), str(self.multiples), "second"])


def _rate_item(rate: float) -> _AdaptiveRate:
    """A moving window for ``rate`` calls/s: ``rate`` per second, or one per ``1/rate`` s below 1/s."""
    if rate >= 1:
        return _AdaptiveRate(math.floor(rate), 1)
    return _AdaptiveRate(1, math.ceil(1 / rate))


# KEYS: rate, successes, last_decrease. ARGV: ceiling, floor, cooldown. Server time, atomic. The lowered
# rate lives an hour without new 429s or successes: an account idle that long starts at the ceiling.
_THROTTLED_LUA = """
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
local last = tonumber(redis.call('GET', KEYS[3]) or '-1e18')
redis.call('SET', KEYS[2], 0)
if now - last < tonumber(ARGV[3]) then return tostring(rate) end
rate = math.max(tonumber(ARGV[2]), rate / 2)
redis.call('SET', KEYS[1], tostring(rate), 'EX', 3600); redis.call('SET', KEYS[3], tostring(now), 'EX', 3600)
return tostring(rate)
"""
# KEYS: rate, successes. ARGV: ceiling, recover_after, step.
_SUCCESS_LUA = """
local rate = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if rate >= tonumber(ARGV[1]) then redis.call('SET', KEYS[2], 0); return tostring(rate) end
local n = redis.call('INCR', KEYS[2])
if n < tonumber(ARGV[2]) then return tostring(rate) end
rate = math.min(tonumber(ARGV[1]), rate + tonumber(ARGV[3]))
redis.call('SET', KEYS[1], tostring(rate), 'EX', 3600); redis.call('SET', KEYS[2], 0)
return tostring(rate)
"""
# KEYS: leases. ARGV: limit, ttl, token. Returns 1 when leased, else the seconds until the next expiry.
_LEASE_LUA = """
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
  return {1, '0'}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tostring(tonumber(first[2]) - now)}
"""


class _RedisState:
    """The adaptive rate and the leases in Redis: atomic Lua scripts, Redis server time."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self._throttled = client.register_script(_THROTTLED_LUA)
        self._success = client.register_script(_SUCCESS_LUA)
        self._lease = client.register_script(_LEASE_LUA)

    def rate(self, ceiling: float) -> float:
        value = self.client.get(f"{self.key}:rate")
        # min(): a process configured with a lower ceiling than the stored rate keeps to its own.
        return ceiling if value is None else min(ceiling, float(value))

    def throttled(self, ceiling: float, floor: float, cooldown: float) -> float:
        keys = [f"{self.key}:rate", f"{self.key}:successes", f"{self.key}:decreased"]
        return min(ceiling, float(self._throttled(keys=keys, args=[ceiling, floor, cooldown])))

    def succeeded(self, ceiling: float, recover_after: int, step: float) -> float:
        keys = [f"{self.key}:rate", f"{self.key}:successes"]
        return min(ceiling, float(self._success(keys=keys, args=[ceiling, recover_after, step])))

    def lease(self, limit: int, ttl: float, token: str) -> float | None:
        leased, until_next = self._lease(keys=[f"{self.key}:leases"], args=[limit, ttl, token])
        return None if int(leased) else float(until_next)

    def release(self, token: str) -> None:
        self.client.zrem(f"{self.key}:leases", token)


class _ProcessState:
    """The adaptive rate and the leases of one process (``memory://``), under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rate: float | None = None
        self._successes = 0
        self._decreased = -math.inf
        self._leases: dict[str, float] = {}

    def rate(self, ceiling: float) -> float:
        with self._lock:
            return ceiling if self._rate is None else min(ceiling, self._rate)

    def throttled(self, ceiling: float, floor: float, cooldown: float) -> float:
        with self._lock:
            rate = ceiling if self._rate is None else min(ceiling, self._rate)
            self._successes = 0
            now = time.monotonic()
            if now - self._decreased >= cooldown:
                rate, self._decreased = max(floor, rate / 2), now
            self._rate = rate
            return rate

    def succeeded(self, ceiling: float, recover_after: int, step: float) -> float:
        with self._lock:
            rate = ceiling if self._rate is None else min(ceiling, self._rate)
            if rate < ceiling:
                self._successes += 1
                if self._successes >= recover_after:
                    rate, self._successes = min(ceiling, rate + step), 0
                self._rate = rate
            return rate

    def lease(self, limit: int, ttl: float, token: str) -> float | None:
        with self._lock:
            now = time.monotonic()
            self._leases = {t: until for t, until in self._leases.items() if until > now}
            if len(self._leases) < limit:
                self._leases[token] = now + ttl
                return None
            return min(self._leases.values()) - now

    def release(self, token: str) -> None:
        with self._lock:
            self._leases.pop(token, None)


class ProviderLimiter:
    """
    The rate and concurrency budget of one provider account, shared through ``storage_uri``.

    :param provider: a key of :data:`DOCUMENTED_LIMITS`; also part of the storage key
    :param account_id: the provider account (Stripe ``acct_``, Twilio ``AC``, Segment space); only a
        hash of it is stored, so a key passed by mistake does not end up in Redis
    :param config: the budget, usually :meth:`LimiterConfig.from_extras`
    :param storage_uri: ``redis://host:port/db`` to share across processes and hosts, or
        ``memory://`` for one process (see the module docstring)
    :param poll_interval: longest sleep between two looks at a full concurrency set: a slot freed
        by another process is noticed within this; one freed by a thread of this process wakes a
        waiter at once. Rate waits sleep exactly until the window frees
    """

    def __init__(
        self,
        provider: str,
        account_id: str,
        config: LimiterConfig,
        storage_uri: str = "memory://",
        poll_interval: float = 0.1,
    ) -> None:
        self.provider = provider
        self.config = config
        self.poll_interval = poll_interval
        account_tag = hashlib.sha256(account_id.encode()).hexdigest()[:16]
        self._ids = (provider, account_tag)
        self._key = f"{KEY_PREFIX}:{provider}:{account_tag}"
        self._storage = storage_from_string(storage_uri)
        self._window = MovingWindowRateLimiter(self._storage)
        if isinstance(self._storage, RedisStorage):
            self._state: _RedisState | SQLiteState | _ProcessState = _RedisState(
                self._storage.storage, self._key
            )
        elif isinstance(self._storage, SQLiteStorage):
            self._state = SQLiteState(self._storage.file, self._key)
        elif isinstance(self._storage, MemoryStorage):
            self._state = _ProcessState()
        else:
            raise ValueError("storage_uri must be redis://..., sqlite:////path or memory://")
        #: how many times this instance slept waiting for budget (tests prove there is no spinning)
        self.sleeps = 0
        # Most waiters for a slot are threads of this process (a task works on 8 requests at once):
        # a release here wakes one of them at once instead of leaving the slot idle until a poll.
        self._released = threading.Condition()
        self._last_rate: float | None = None  # the shared rate as this process last read it

    # -- one provider call -------------------------------------------------------------------

    def run(self, call: Callable[[], T], *, api: str, operation: str, wait: float = DEFAULT_BUDGET_WAIT) -> T:
        """
        Make one provider call within the budget, and tell the budget how the provider answered.

        A 429 (:class:`TransientApiError` with status 429: Stripe ``rate_limit``, Twilio 20429,
        Segment) lowers the shared rate; any other answer, a provider's refusal included, counts
        as a call that was not throttled. No budget within ``wait``, or the shared storage
        unreachable, is a :class:`TransientApiError`: the retry loop waits and tries again, and
        a storage that stays down fails the task instead of calling the provider unlimited.

        :param call: the provider call, without arguments
        :param api: ``stripe``, ``twilio`` or ``segment``, for the error
        :param operation: what the call does, for the error
        :param wait: seconds to wait for budget at most
        """
        with ExitStack() as held:
            try:
                self.acquire(wait)
                held.enter_context(self.concurrency_slot(wait))
            except LimiterTimeout:
                raise TransientApiError(
                    api, operation, detail=f"no client budget within {wait:.0f}s"
                ) from None
            except _STORAGE_ERRORS as exc:
                raise TransientApiError(
                    api, operation, detail=f"limiter storage ({LIMITER_URL_ENV}) failed: {type(exc).__name__}"
                ) from None
            try:
                result = call()
            except TransientApiError as exc:
                if exc.status == 429:
                    self._feedback(self.on_throttled)
                raise
            except PermanentApiError:
                self._feedback(self.on_success)
                raise
        self._feedback(self.on_success)
        return result

    def _feedback(self, record: Callable[[], float | None]) -> None:
        # The call is made; a storage hiccup while recording its answer must not undo it.
        try:
            record()
        except _STORAGE_ERRORS as exc:
            log.warning("%s limiter: could not record a call's answer: %s", self.provider, type(exc).__name__)

    def describe(self) -> str:
        """
        The budget in one line, for the preflight and the connection's Test button; reading the
        current rate and taking a slot prove the shared storage answers.

        :raises TransientApiError: the shared storage did not answer
        """
        try:
            parts = []
            rate, ceiling = self.current_rate(), self.config.rate_per_second
            if rate is not None and ceiling is not None:
                lowered = f"{rate:g} after 429s, up to " if rate < ceiling else ""
                parts.append(f"{lowered}{ceiling:g} calls/s")
            if self.config.concurrency is not None:
                with self.concurrency_slot(timeout=5):
                    parts.append(f"{self.config.concurrency} calls in flight")
        except (*_STORAGE_ERRORS, LimiterTimeout) as exc:
            raise TransientApiError(
                self.provider, "read the call budget", detail=f"{LIMITER_URL_ENV}: {type(exc).__name__}"
            ) from None
        return f"{' and '.join(parts) or 'no limit'}, shared {self.sharing}"

    @property
    def sharing(self) -> str:
        """Who shares this budget, as the storage decides."""
        if isinstance(self._state, _RedisState):
            return "through Redis by every process and host"
        if isinstance(self._state, SQLiteState):
            return "by this host's processes (a SQLite file; use Redis with workers on several hosts)"
        return "in this process only"

    # -- the adaptive rate -------------------------------------------------------------------

    def current_rate(self) -> float | None:
        """The effective calls per second all processes use now, or None when there is no rate limit."""
        ceiling = self.config.rate_per_second
        if ceiling is None:
            return None
        self._last_rate = self._state.rate(ceiling)
        return self._last_rate

    def on_throttled(self) -> float | None:
        """
        Record a 429: halve the shared rate (not below the floor, once per ``decrease_cooldown``).

        :return: the new effective rate
        """
        cfg = self.config
        if cfg.rate_per_second is None:
            return None
        rate = self._last_rate = self._state.throttled(
            cfg.rate_per_second, cfg.min_rate_per_second, cfg.decrease_cooldown
        )
        log.info("%s rate limited by the provider; client rate now %.2f/s", self.provider, rate)
        return rate

    def on_success(self) -> float | None:
        """
        Record a call that was not throttled: every ``recover_after`` of them add ``recover_step``.

        :return: the new effective rate
        """
        cfg = self.config
        if cfg.rate_per_second is None:
            return None
        if self._last_rate is not None and self._last_rate >= cfg.rate_per_second:
            # At the ceiling when this call took its budget: nothing to restore, and one storage
            # round trip per call saved (the common case).
            return self._last_rate
        self._last_rate = self._state.succeeded(cfg.rate_per_second, cfg.recover_after, cfg.recover_step)
        return self._last_rate

    def acquire(self, timeout: float | None = None) -> None:
        """
        Take one call from the rate budget, sleeping until the moving window frees a slot.

        :param timeout: seconds to wait at most; None waits as long as it takes
        :raises LimiterTimeout: the budget did not free within ``timeout``
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rate = self.current_rate()
            if rate is None:
                return
            item = _rate_item(rate)
            if self._window.hit(item, *self._ids):
                return
            # The window's oldest call leaves at reset_time: sleep until then, not in a loop. Every
            # waiter wakes for that one freed call; a few random milliseconds decide which one gets
            # it by lot, not always the process the OS happens to wake first.
            reset = self._window.get_window_stats(item, *self._ids).reset_time
            wait = max(0.001, reset - time.time()) + random.uniform(0, WAKE_JITTER)
            self._sleep(wait, deadline)

    # -- the concurrency leases --------------------------------------------------------------

    @contextmanager
    def concurrency_slot(self, timeout: float | None = None) -> Iterator[None]:
        """
        Hold one of the account's ``concurrency`` slots for the duration of the block.

        :param timeout: seconds to wait for a slot at most; None waits as long as it takes
        :raises LimiterTimeout: no slot freed within ``timeout``
        """
        if self.config.concurrency is None:
            yield
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        token = uuid.uuid4().hex
        while (
            until_next := self._state.lease(self.config.concurrency, self.config.lease_ttl, token)
        ) is not None:
            # Look again when a thread here releases, after a short poll (another process may have), or
            # when the oldest lease expires.
            self._sleep(max(0.001, min(self.poll_interval, until_next)), deadline, self._released)
        try:
            yield
        finally:
            try:
                self._state.release(token)
            except _STORAGE_ERRORS as exc:  # the lease expires after lease_ttl anyway
                log.warning("%s limiter: could not release a slot: %s", self.provider, type(exc).__name__)
            with self._released:
                self._released.notify()

    def _sleep(self, seconds: float, deadline: float | None, wake: threading.Condition | None = None) -> None:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LimiterTimeout(f"no {self.provider} budget within the timeout")
            seconds = min(seconds, left)
        self.sleeps += 1
        if wake is None:
            time.sleep(seconds)
            return
        with wake:
            wake.wait(seconds)


def default_storage_uri() -> str:
    """Where budgets are shared without ``$GDPR_ERASURE_LIMITER_URL``: a file in the Airflow home
    that every process of the host uses (the LocalExecutor's tasks, the triggerer)."""
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return f"sqlite:///{(home / 'gdpr-erasure-limiter.sqlite').resolve()}"


_registry: dict[tuple[Any, ...], ProviderLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(
    provider: str, account_id: str, extras: Mapping[str, Any] | None, conn_id: str
) -> ProviderLimiter:
    """
    The process's limiter of one provider account, shared by every hook in the process.

    One instance per (provider, account, storage, budget): the ``memory://`` budget is shared
    only among holders of the same instance, and a Redis client is one connection pool.

    :param provider: a key of :data:`DOCUMENTED_LIMITS`
    :param account_id: the provider account (hashed before it is stored)
    :param extras: the connection's extras (``rate_per_second``, ``concurrency``, ``fraction``...)
    :param conn_id: the connection, named in a configuration error
    :raises ApiConfigurationError: the extras' limits, or ``$GDPR_ERASURE_LIMITER_URL``, are invalid
    """
    storage_uri = os.environ.get(LIMITER_URL_ENV) or default_storage_uri()
    try:
        config = LimiterConfig.from_extras(provider, extras)
    except ValueError as exc:
        raise ApiConfigurationError(f"connection {conn_id}: {exc}") from None
    key = (provider, hashlib.sha256(account_id.encode()).hexdigest(), storage_uri, config)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            try:
                limiter = ProviderLimiter(provider, account_id, config, storage_uri)
            except (ConfigurationError, ValueError) as exc:
                raise ApiConfigurationError(
                    f"{LIMITER_URL_ENV} must be redis://host:port/db, sqlite:////path or memory:// "
                    f"({type(exc).__name__})"
                ) from None
            except (sqlite3.Error, OSError) as exc:
                raise ApiConfigurationError(
                    f"the call budgets' file ({storage_uri}) cannot be opened ({type(exc).__name__}): "
                    f"make its directory writable, or set {LIMITER_URL_ENV} to a Redis"
                ) from None
            _registry[key] = limiter
        return limiter

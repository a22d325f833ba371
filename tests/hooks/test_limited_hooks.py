"""The hooks call within their accounts' budgets, against the sandbox enforcing the providers' limits.

The sandbox answers over-limit calls as the providers do (429 ``rate_limit``, 20429) and counts
them; these tests prove the hooks' client-side budget (hooks/limiter.py) keeps those counts at
zero, that a process's budget is shared through Redis with another process, and that a 429
lowers the shared rate. A missing Redis fails them (``GDPR_TEST_REDIS_URL``), never skips.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from support.stripe_hook import FAST

from gdpr_erasure.hooks import limiter as limiter_module
from gdpr_erasure.hooks.errors import ApiConfigurationError
from gdpr_erasure.hooks.limiter import LIMITER_URL_ENV
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.hooks.twilio import TwilioHook
from sandbox.connections import sandbox_connections

REDIS_URL = os.environ.get("GDPR_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
MISSING = "cus_NoSuchCustomer"

# One process of the sharing test: ``calls`` retrievals on the Stripe hook, once told to go.
_CALLER = """
import sys
from gdpr_erasure.hooks.stripe import StripeHook
hook = StripeHook()
hook.verify_account()
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    hook.retrieve_customer("cus_NoSuchCustomer")
"""


@pytest.fixture
def limited(sandbox, monkeypatch):
    """Set the sandbox's limits and connections that declare them; clear both afterwards."""
    monkeypatch.setenv(LIMITER_URL_ENV, "memory://")
    limiter_module._registry.clear()

    def apply(limits: dict, fraction: float = 0.8) -> dict[str, dict]:
        sandbox.set_limits(limits)
        connections = sandbox_connections(sandbox.base_url, sandbox.accounts(), limits, fraction)
        for conn_id, conn in connections.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return connections

    yield apply
    sandbox.set_limits({})
    limiter_module._registry.clear()


@pytest.fixture
def shared_budget(sandbox):
    """The Redis the budget is shared through, with the sandbox's Stripe account's keys gone
    before and after (a lowered rate would otherwise outlive the test by an hour)."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # unreachable is an error, not a skip
    tag = hashlib.sha256(sandbox.accounts()["stripe"]["account_id"].encode()).hexdigest()[:16]

    def forget() -> None:
        for key in client.scan_iter(f"*{tag}*"):
            client.delete(key)

    forget()
    yield REDIS_URL
    forget()
    client.close()


def _stripe_counts(sandbox) -> dict[str, int]:
    return sandbox.limits()["counts"]["stripe"]


def test_threads_of_one_process_keep_to_the_stripe_rate(sandbox, limited, fresh_stripe_process):
    limited({"stripe": {"rate": 10, "burst": 10}})
    hook = StripeHook(retry_policy=FAST)
    hook.verify_account()
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: hook.retrieve_customer(MISSING), range(24)))
    took = time.monotonic() - started
    counts = _stripe_counts(sandbox)
    assert answers == [None] * 24
    assert counts["refused_rate"] == 0, counts
    # 8 calls/s (0.8 of 10) in any second: the 24 calls, after the account check's, need 2 s more.
    assert took >= 2.0, took
    assert hook.limiter.current_rate() == 8.0


def test_twilio_calls_in_flight_stay_within_the_concurrency_limit(sandbox, limited):
    limited({"twilio": {"concurrency": 3}}, fraction=1.0)
    sandbox.set_faults({"twilio": {"latency_ms": 150}})
    hook = TwilioHook(retry_policy=FAST)
    with ThreadPoolExecutor(8) as pool:
        found = list(
            pool.map(
                lambda _: hook.memory_profile_exists("mem_profile_00000000000000000000000000"), range(16)
            )
        )
    counts = sandbox.limits()["counts"]["twilio"]
    assert found == [False] * 16
    assert counts["refused_concurrency"] == 0, counts
    assert counts["peak_concurrency"] == 3, counts


def test_a_429_lowers_the_rate_and_every_call_still_succeeds(
    sandbox, limited, monkeypatch, fresh_stripe_process
):
    """The connection claims 20/s, the account allows 4/s: the sandbox's 429s halve the budget."""
    limited({"stripe": {"rate": 4, "burst": 4}}, fraction=1.0)
    connections = sandbox_connections(sandbox.base_url, sandbox.accounts(), {"stripe": {"rate": 20}}, 1.0)
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(connections["stripe_default"]))
    hook = StripeHook(retry_policy=FAST)
    answers = [hook.retrieve_customer(MISSING) for _ in range(16)]
    counts = _stripe_counts(sandbox)
    assert answers == [None] * 16
    assert counts["refused_rate"] > 0, counts
    assert hook.limiter.current_rate() <= 5.0


def _callers(sandbox, storage: str, calls: int) -> tuple[dict[str, int], float]:
    """Two processes making ``calls`` each at once through ``storage``; the sandbox's counts and
    how long the calls took."""
    env = {**os.environ, LIMITER_URL_ENV: storage}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CALLER, str(calls)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:  # both have imported Airflow and proven the account
            assert proc.stdout.readline() == b"ready\n"
        started = time.monotonic()
        for proc in procs:
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
        return _stripe_counts(sandbox), time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("shared", ["redis", "sqlite"])
def test_two_processes_share_one_budget(sandbox, limited, shared_budget, tmp_path, shared):
    """Each process alone keeps to 8/s; two sharing Redis, or the local fallback's SQLite file,
    keep to 8/s together, against a sandbox allowing 10/s. Two with process-local budgets
    (``memory://``) make 16/s, and the sandbox refuses some."""
    storage = shared_budget if shared == "redis" else f"sqlite:///{tmp_path / 'limiter.sqlite'}"
    limited({"stripe": {"rate": 10, "burst": 10}})
    counts, took = _callers(sandbox, storage, 16)
    assert counts["refused_rate"] == 0, counts
    assert took >= 3.0, took  # 32 calls at 8/s
    if shared == "redis":
        limited({"stripe": {"rate": 10, "burst": 10}})
        local, _ = _callers(sandbox, "memory://", 16)
        assert local["refused_rate"] > 0, local


def test_invalid_limit_settings_fail_loud(sandbox, limited, monkeypatch, tmp_path, fresh_stripe_process):
    connections = limited({})
    conn = connections["stripe_default"]
    conn["extra"]["fraction"] = "most"
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))
    with pytest.raises(ApiConfigurationError, match="stripe_default: fraction must be a number"):
        StripeHook(retry_policy=FAST).retrieve_customer(MISSING)
    conn["extra"]["fraction"] = ""  # an empty form field is unset
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))
    monkeypatch.setenv(LIMITER_URL_ENV, "memcached://nowhere")
    with pytest.raises(ApiConfigurationError, match=LIMITER_URL_ENV):
        StripeHook(retry_policy=FAST).retrieve_customer(MISSING)
    # The default file where it cannot be written: a clear line, not sqlite's traceback.
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    monkeypatch.delenv(LIMITER_URL_ENV)
    monkeypatch.setenv("AIRFLOW_HOME", str(not_a_directory / "home"))
    with pytest.raises(ApiConfigurationError, match=r"cannot be opened .*make its directory writable"):
        StripeHook(retry_policy=FAST).retrieve_customer(MISSING)


def test_the_preflight_shows_each_budget_and_fails_when_its_storage_is_down(sandbox, limited, monkeypatch):
    limited({"stripe": {"rate": 25}, "twilio": {"concurrency": 10}})
    budgets = {
        hook.conn_type: next(r for r in hook.checks() if r.name == "call budget")
        for hook in (StripeHook(retry_policy=FAST), TwilioHook(retry_policy=FAST))
    }
    assert budgets["stripe"].ok and budgets["stripe"].detail.startswith("20 calls/s, shared in this process")
    assert budgets["twilio"].ok and budgets["twilio"].detail.startswith("8 calls in flight")
    monkeypatch.setenv(LIMITER_URL_ENV, "redis://127.0.0.1:1/0")  # nothing listens there
    [down] = [r for r in StripeHook(retry_policy=FAST).checks() if r.name == "call budget"]
    assert not down.ok and LIMITER_URL_ENV in down.detail and "ConnectionError" in down.detail

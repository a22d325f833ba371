"""Provider limits in the sandbox (``--limit``, ``/_sandbox/limits``): a token bucket and a
concurrency limit per API, answered with each provider's own 429 and counted."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from sandbox_support import STRIPE_KEY

from gdpr_erasure.hooks.retry import RetryPolicy
from gdpr_erasure.hooks.stripe import StripeHook
from sandbox.client import SandboxClient
from sandbox.launcher import start_sandbox
from sandbox.limits import Limits, TokenBucket

NO_COUNTS = {"admitted": 0, "refused_rate": 0, "refused_concurrency": 0, "peak_concurrency": 0}


def _customer(sandbox) -> str:
    return sandbox.person("person-006")["stripe_customer_ids"][0]


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.seconds_until_token() == pytest.approx(0.5)
    now[0] = 0.5
    assert [bucket.try_take() for _ in range(2)] == [True, False]
    now[0] = 100.0  # a long pause refills to the burst, not beyond
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]


def test_limit_specs_are_checked_and_name_the_bad_flag():
    limits = Limits()
    limits.apply_spec("stripe:rate=25,concurrency=5")
    limits.apply_spec("stripe:burst=50")
    assert limits.as_dict()["stripe"] == {"rate": 25.0, "burst": 50.0, "concurrency": 5}
    for bad in ("stripe:rate=fast", "stripe", "paypal:rate=1", "twilio:concurrency=1.5", "stripe:speed=3"):
        with pytest.raises(ValueError, match=r"^--limit '" + bad.replace(".", r"\.") + "'"):
            limits.apply_spec(bad)
    assert limits.as_dict()["stripe"] == {"rate": 25.0, "burst": 50.0, "concurrency": 5}


def test_a_burst_over_the_rate_gets_stripes_429_and_is_counted(sandbox, api):
    # One token every 10 s: the five of the burst pass, the rest of a quick burst cannot.
    sandbox.set_limits({"stripe": {"rate": 0.1, "burst": 5}})
    customer_id = _customer(sandbox)
    answers = [api.stripe("GET", f"/v1/customers/{customer_id}") for _ in range(8)]
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 3
    refused = answers[-1]
    assert refused.json() == {
        "error": {
            "code": "rate_limit",
            "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
            "message": "Request rate limit exceeded. You can learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            "type": "invalid_request_error",
        }
    }
    assert refused.headers["Retry-After"] == "10"
    assert refused.headers["Request-Id"].startswith("req_")
    counts = sandbox.limits()["counts"]
    assert counts["stripe"] == {**NO_COUNTS, "admitted": 5, "refused_rate": 3, "peak_concurrency": 1}
    assert counts["twilio"] == counts["segment"] == NO_COUNTS
    limited = [r for r in sandbox.requests_log() if r.get("limited")]
    assert [(r["status"], r["limited"], r["route"]) for r in limited] == [
        (429, "rate", "/v1/customers/{customer}")
    ] * 3


def test_twilio_and_segment_refuse_in_their_own_shapes(sandbox, api):
    sandbox.set_limits({"twilio": {"rate": 0.1, "burst": 1}, "segment": {"rate": 0.1, "burst": 2}})
    assert api.api2010("GET", "/Messages.json").status_code == 200
    twilio = api.api2010("GET", "/Messages.json")
    assert twilio.status_code == 429
    assert twilio.json() == {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    assert twilio.headers["Retry-After"] == "10"
    assert api.public("GET", "/regulations").status_code == 200
    assert api.profile("user_id", "nobody", kind="traits").status_code in (200, 404)
    public = api.public("GET", "/regulations")
    assert public.status_code == 429
    assert public.json()["errors"][0]["type"] == "RateLimited"
    assert public.headers["X-RateLimit-Remaining"] == "0" and public.headers["Retry-After"] == "10"
    profile = api.profile("user_id", "nobody", kind="traits")
    assert (profile.status_code, profile.json()["error"]["code"]) == (429, "rate_limit_error")
    counts = sandbox.limits()["counts"]
    assert (counts["twilio"]["admitted"], counts["twilio"]["refused_rate"]) == (1, 1)
    assert (counts["segment"]["admitted"], counts["segment"]["refused_rate"]) == (2, 2)


def test_within_the_rate_nothing_is_refused(sandbox, api):
    sandbox.set_limits({"stripe": {"rate": 1000, "concurrency": 4}})
    customer_id = _customer(sandbox)
    assert {api.stripe("GET", f"/v1/customers/{customer_id}").status_code for _ in range(30)} == {200}
    assert sandbox.limits()["counts"]["stripe"] == {**NO_COUNTS, "admitted": 30, "peak_concurrency": 1}


def test_a_long_runs_reader_gets_each_call_once_and_the_calls_in_flight(sandbox, api):
    # A benchmark reads the log while it runs (it keeps only the newest 10,000 calls) and samples
    # the calls in flight: ?after=N answers only the calls numbered above N.
    customer_id = _customer(sandbox)
    for _ in range(3):
        api.stripe("GET", f"/v1/customers/{customer_id}")
    first = sandbox.requests_log(after=0)  # the numbers go on across resets
    n = first[0]["seq"]
    assert [e["seq"] for e in first] == [n, n + 1, n + 2]
    api.stripe("GET", f"/v1/customers/{customer_id}")
    assert [e["seq"] for e in sandbox.requests_log(after=n + 2)] == [n + 3]
    assert sandbox.requests_log(after=n + 3) == []
    assert requests.get(f"{sandbox.base_url}/_sandbox/requests?after=x", timeout=10).status_code == 400
    assert sandbox.limits()["in_flight"] == {"stripe": 0, "twilio": 0, "segment": 0}


def test_calls_over_the_concurrency_limit_are_refused_at_once(sandbox, api):
    limit = 3
    sandbox.set_faults({"stripe": {"latency_ms": 800}})
    sandbox.set_limits({"stripe": {"concurrency": limit}})
    customer_id = _customer(sandbox)
    start = threading.Barrier(limit + 1)
    statuses: list[int] = []

    def one_call() -> None:
        session = requests.Session()  # one connection each, as parallel workers have
        start.wait()
        response = session.get(
            f"{sandbox.base_url}/stripe/v1/customers/{customer_id}",
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
            timeout=10,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=one_call) for _ in range(limit + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * limit + [429]
    assert sandbox.limits()["counts"]["stripe"] == {
        **NO_COUNTS,
        "admitted": limit,
        "refused_concurrency": 1,
        "peak_concurrency": limit,
    }
    # Once they are done, the next call passes again.
    assert api.stripe("GET", f"/v1/customers/{customer_id}").status_code == 200


def test_limits_are_replaced_whole_checked_and_cleared_by_a_reset(sandbox):
    answer = sandbox.set_limits({"twilio": {"concurrency": 2}})
    assert answer["limits"]["twilio"] == {"rate": None, "burst": None, "concurrency": 2}
    assert answer["limits"]["stripe"] == {"rate": None, "burst": None, "concurrency": None}
    with pytest.raises(requests.HTTPError) as info:
        sandbox.set_limits({"twilio": {"concurrency": -1}})
    assert info.value.response.status_code == 400
    assert sandbox.limits()["limits"]["twilio"]["concurrency"] == 2  # an invalid body changes nothing
    sandbox.reset()
    assert sandbox.limits()["limits"]["twilio"]["concurrency"] is None


def test_the_limit_flag_sets_the_runs_limits_and_a_reset_keeps_them():
    process = start_sandbox("--limit", "stripe:rate=25", "--limit", "twilio:concurrency=4,rate=50")
    try:
        client = SandboxClient(process.url, timeout=10)
        client.set_limits({})
        client.reset()
        limits = client.limits()["limits"]
        assert limits["stripe"] == {"rate": 25.0, "burst": None, "concurrency": None}
        assert limits["twilio"] == {"rate": 50.0, "burst": None, "concurrency": 4}
    finally:
        process.stop()


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "sandbox", "serve"],
        [str(Path(sys.executable).parent / "gdpr-erasure"), "sandbox", "serve"],
    ],
    ids=["python -m sandbox", "gdpr-erasure sandbox"],
)
def test_a_bad_limit_flag_is_one_line_and_exit_2(command):
    result = subprocess.run(
        [*command, "--port", "0", "--limit", "stripe:rate=fast"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sandbox: --limit 'stripe:rate=fast': limit 'rate' needs a number, got 'fast'"
    ]


def test_the_stripe_hook_retries_the_limiters_429_and_succeeds(api_connections, sandbox):
    # Two calls a second, no burst: back-to-back reads are refused and retried after Retry-After.
    sandbox.set_limits({"stripe": {"rate": 2, "burst": 1}})
    hook = StripeHook(retry_policy=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05))
    customer_id = _customer(sandbox)
    for _ in range(3):
        assert hook.retrieve_customer(customer_id)["id"] == customer_id
    counts = sandbox.limits()["counts"]["stripe"]
    assert counts["refused_rate"] >= 1
    assert counts["admitted"] >= 3

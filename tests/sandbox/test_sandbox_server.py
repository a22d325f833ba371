"""The sandbox as a product: faults, latency, edge-case people, request log, reset, loopback only."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import requests
from sandbox_support import Api

from sandbox import control, stripe_api
from sandbox.server import create_app, is_loopback, serve
from sandbox.state import SandboxState, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rate_429_answers_with_retry_after_and_changes_nothing(sandbox, api: Api):
    sandbox.set_faults(
        {api_name: {"rate_429": 1.0, "retry_after": 3} for api_name in ("stripe", "twilio", "segment")}
    )
    person = sandbox.person("multi_stripe")
    before = sandbox.state("multi_stripe")
    customer = api.stripe("DELETE", f"/v1/customers/{person['stripe_customer_ids'][0]}")
    assert customer.status_code == 429 and customer.headers["Retry-After"] == "3"
    assert customer.json()["error"]["code"] == "rate_limit"
    memory = api.memory("DELETE", f"/Profiles/{person['memory_profile_id']}")
    assert memory.status_code == 429 and memory.json()["code"] == 20429
    regulation = api.public(
        "POST",
        "/regulations",
        json={
            "regulationType": "SUPPRESS_WITH_DELETE",
            "subjectType": "USER_ID",
            "subjectIds": [person["segment_user_id"]],
        },
    )
    assert regulation.status_code == 429 and regulation.headers["X-RateLimit-Remaining"] == "0"
    profile = api.profile("email", person["email"])
    assert profile.status_code == 429 and profile.json()["error"]["code"] == "rate_limit_error"
    assert sandbox.state("multi_stripe") == before
    log = sandbox.requests_log()
    assert len(log) == 4 and all(e["faulted"] and e["status"] == 429 for e in log)


def test_rate_5xx_answers_server_errors_and_changes_nothing(sandbox, api: Api):
    sandbox.set_faults({"twilio": {"rate_5xx": 1.0}})
    phone = sandbox.person("no_stripe")["phone"]
    before = sandbox.state("no_stripe")
    sandbox.set_faults({})
    sid = api.api2010("GET", "/Messages.json", params={"To": phone}).json()["messages"][0]["sid"]
    sandbox.set_faults({"twilio": {"rate_5xx": 1.0}})
    statuses = set()
    for _ in range(12):
        response = api.api2010("DELETE", f"/Messages/{sid}.json")
        statuses.add(response.status_code)
        assert response.json()["code"] in (20500, 20503)
    assert statuses == {500, 503}
    assert sandbox.state("no_stripe") == before
    assert api.stripe("GET", "/v1/customers").status_code == 200  # faults are per API


def test_latency_applies_without_serialising_concurrent_calls(sandbox, api: Api):
    sandbox.set_faults({"stripe": {"latency_ms": 500}})
    started = time.monotonic()
    assert api.stripe("GET", "/v1/customers").status_code == 200
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    requests.get(
                        f"{api.base_url}/stripe/v1/customers",
                        headers={"Authorization": "Bearer sk_test_x"},
                        timeout=20,
                    ).status_code
                ),
                range(100),
            )
        )
    elapsed = time.monotonic() - started
    assert statuses == [200] * 100
    assert 0.5 <= elapsed < 5.0, f"100 calls of 500 ms took {elapsed:.1f} s: they were serialised"
    assert api.public("GET", "/regulations/x").elapsed.total_seconds() < 0.5  # other APIs unaffected


def test_fault_configuration_is_validated(sandbox):
    sandbox.set_faults({"stripe": {"rate_429": 0.5}})
    for invalid in (
        {"stripe": {"rate_429": 2}},
        {"stripe": {"nope": 1}},
        {"paypal": {}},
        {"stripe": {"latency_ms": -1}},
    ):
        response = requests.put(f"{sandbox.base_url}/_sandbox/faults", json=invalid, timeout=10)
        assert response.status_code == 400 and response.json()["error"]
    assert requests.get(f"{sandbox.base_url}/_sandbox/faults", timeout=10).json()["stripe"]["rate_429"] == 0.5


def test_edge_case_people_are_always_seeded(sandbox, api: Api):
    people = {p["key"]: p for p in sandbox.people()}
    assert sum(key.startswith("person-") for key in people) == 20
    assert people["no_stripe"]["stripe_customer_ids"] == []
    multi = people["multi_stripe"]
    emails = {
        api.stripe("GET", f"/v1/customers/{cid}").json()["email"] for cid in multi["stripe_customer_ids"]
    }
    assert len(multi["stripe_customer_ids"]) >= 2 and emails == {multi["email"]}
    assert people["no_segment"]["segment_user_id"] is None
    assert api.profile("email", people["no_segment"]["email"]).status_code == 404
    quiet = sandbox.state("quiet_phone")["twilio"]
    assert (quiet["messages"], quiet["calls"], quiet["participations"]) == (0, 0, 0)
    assert sandbox.state("many_messages")["twilio"]["messages"] > 100
    assert sandbox.state("in_flight")["twilio"]["messages_in_flight"] == 1
    assert "segment_failed" in people["segment_failed"]["flags"]
    assert "segment_stuck" in people["segment_stuck"]["flags"]
    for person in people.values():
        assert person["email"].rsplit("@", 1)[1] in ("example.com", "example.org", "example.net")
        assert person["phone"].startswith("+447700900") or person["phone"][5:10] == "55501"


def test_request_log_holds_route_templates_and_no_personal_data(sandbox, api: Api):
    person = sandbox.person("multi_stripe")
    api.stripe("GET", "/v1/customers", params={"email": person["email"]})
    api.stripe(
        "POST",
        f"/v1/customers/{person['stripe_customer_ids'][0]}",
        data={"email": person["email"]},
        headers={"Idempotency-Key": "erase-1"},
    )
    api.stripe("GET", f"/v1/{person['email']}")
    api.api2010("GET", "/Messages.json", params={"To": person["phone"]})
    api.twilio("conversations", "GET", "/v1/ParticipantConversations", params={"Address": person["phone"]})
    api.memory("POST", "/Profiles/Lookup", json={"idType": "email", "value": person["email"]})
    api.profile("email", person["email"])
    api.profile("phone", person["phone"], "traits")
    api.public(
        "POST",
        "/regulations",
        json={
            "regulationType": "SUPPRESS_WITH_DELETE",
            "subjectType": "USER_ID",
            "subjectIds": [person["segment_user_id"]],
        },
    )
    log = sandbox.requests_log()
    dump = json.dumps(log)
    for someone in sandbox.people():
        assert someone["email"] not in dump and someone["phone"] not in dump
        assert someone["phone"].lstrip("+") not in dump
    assert [e["route"] for e in log] == [
        "/v1/customers",
        "/v1/customers/{customer}",
        "<unmatched>",
        "/2010-04-01/Accounts/{AccountSid}/Messages.json",
        "/v1/ParticipantConversations",
        "/v1/Stores/{storeId}/Profiles/Lookup",
        "/v1/spaces/{space_id}/collections/{collection}/profiles/{identifier}/external_ids",
        "/v1/spaces/{space_id}/collections/{collection}/profiles/{identifier}/traits",
        "/regulations",
    ]
    assert log[1]["idempotency_key"] == "erase-1"
    assert {e["api"] for e in log} == {"stripe", "twilio", "segment"}
    assert all(set(e) >= {"api", "method", "route", "status", "faulted", "at"} for e in log)
    assert requests.delete(f"{sandbox.base_url}/_sandbox/requests", timeout=10).status_code == 204
    assert sandbox.requests_log() == []


def test_unknown_paths_answer_like_each_service(sandbox, api: Api):
    stripe_404 = api.stripe("GET", "/v1/charges_everywhere")
    assert stripe_404.status_code == 404
    assert stripe_404.json()["error"]["message"].startswith(
        "Unrecognized request URL (GET: /v1/charges_everywhere)"
    )
    assert api.stripe("PUT", "/v1/customers").json()["error"]["type"] == "invalid_request_error"
    assert api.twilio("api", "GET", "/2010-04-01/Accounts.json").json()["code"] == 20404
    assert api.twilio("elsewhere", "GET", "/v1/x").status_code == 404
    assert api.memory("GET", "/Profiles").json()["code"] == 20404
    assert (
        api.http.get(
            f"{api.base_url}/segment/profiles/v1/nothing", auth=("sandbox-t", ""), timeout=10
        ).json()["error"]["code"]
        == "not_found"
    )
    assert api.public("GET", "/nothing").json() == {
        "errors": [{"type": "NotFound", "message": "Resource not found"}]
    }
    assert requests.get(f"{sandbox.base_url}/_sandbox/state/person/nobody", timeout=10).status_code == 404


def test_reset_restores_the_seed_and_clears_faults_and_log(sandbox, api: Api):
    customer_id = sandbox.person("quiet_phone")["stripe_customer_ids"][0]
    api.stripe("DELETE", f"/v1/customers/{customer_id}")
    sandbox.set_faults({"segment": {"rate_5xx": 0.5}})
    sandbox.reset()
    assert api.stripe("GET", f"/v1/customers/{customer_id}").json()["object"] == "customer"
    assert "deleted" not in api.stripe("GET", f"/v1/customers/{customer_id}").json()
    assert sandbox.set_faults({}) == requests.get(f"{sandbox.base_url}/_sandbox/faults", timeout=10).json()
    reseeded = sandbox.reset(seed=7, people=3)
    assert reseeded["settings"]["seed"] == 7 and reseeded["people"] == len(sandbox.people())
    assert sum(p["key"].startswith("person-") for p in sandbox.people()) == 3
    bad = requests.post(f"{sandbox.base_url}/_sandbox/reset", json={"people": -1}, timeout=10)
    assert bad.status_code == 400


def test_same_seed_gives_the_same_people():
    def catalog(seed: int) -> list[dict]:
        return [
            control.person_summary(p) for p in SandboxState(Settings(seed=seed, people=6)).people.values()
        ]

    assert catalog(3) == catalog(3)
    assert catalog(3) != catalog(4)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com"])
def test_serve_refuses_non_loopback_hosts(host: str, capsys):
    assert serve(host=host, port=0) == 2
    assert "only loopback" in capsys.readouterr().err


def test_loopback_detection():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "localhost.example.com"))


def test_python_m_sandbox_serves_with_command_line_faults():
    """``python -m sandbox serve`` works on its own, applies --fault, and refuses other hosts."""
    refused = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=REPO_ROOT,
    )
    assert refused.returncode == 2 and "only loopback" in refused.stderr
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "serve",
        "--port",
        "0",
        "--people",
        "2",
        "--fault",
        "stripe:rate_429=1",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        base_url = line.strip().rsplit(" ", 1)[1]
        assert requests.get(f"{base_url}/_sandbox/faults", timeout=10).json()["stripe"]["rate_429"] == 1.0
        limited = requests.get(
            f"{base_url}/stripe/v1/customers", headers={"Authorization": "Bearer sk_test_x"}, timeout=10
        )
        assert limited.status_code == 429
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_create_app_serves_in_process_and_hides_request_data_on_bugs(monkeypatch, caplog):
    """``create_app`` runs without a server; a handler bug answers the API's 500 and logs no PII."""

    def broken(call):
        raise KeyError(call.query["email"])

    monkeypatch.setattr(stripe_api, "list_customers", broken)
    state = SandboxState(Settings(people=1))
    email = next(iter(state.people.values())).email

    async def exercise() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            health = await client.get("/_sandbox/health")
            customers = await client.get(
                "/stripe/v1/customers", params={"email": email}, headers={"Authorization": "Bearer sk_test_x"}
            )
            return health, customers

    health, response = asyncio.run(exercise())
    assert health.json() == {"status": "ok"}
    assert response.status_code == 500 and response.json()["error"]["type"] == "api_error"
    assert "KeyError" in caplog.text and email not in caplog.text
    assert state.requests[-1]["route"] == "/v1/customers" and state.requests[-1]["status"] == 500


def test_the_listening_socket_says_tcp_so_kept_alive_calls_are_not_delayed():
    """asyncio sets TCP_NODELAY only on accepted sockets whose listener was created with
    proto=IPPROTO_TCP; without it every call on a kept-alive connection (what the SDKs use)
    waited 40 ms for the client's delayed ACK."""
    import socket

    from sandbox.server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()

"""Exact request totals, which stay right when the request log drops its oldest entries."""

from __future__ import annotations

import requests

from sandbox.state import SandboxState


def test_totals_are_exact_when_the_log_wraps():
    state = SandboxState()
    state.requests = type(state.requests)(maxlen=5)  # a tiny log, so it wraps at once
    for _ in range(12):
        state.log_request(
            {"api": "stripe", "method": "DELETE", "route": "/v1/customers/{customer}", "status": 200}
        )
    state.log_request(
        {
            "api": "stripe",
            "method": "POST",
            "route": "/v1/customers/{customer}",
            "status": 200,
            "idempotent_replay": True,
        }
    )
    assert len(state.requests) == 5
    assert state.request_counts[("stripe", "DELETE", "/v1/customers/{customer}", 200, False)] == 12
    assert state.request_counts[("stripe", "POST", "/v1/customers/{customer}", 200, True)] == 1
    state.clear_requests()
    assert not state.request_counts


def test_counts_endpoint_over_http(sandbox):
    customer = sandbox.person("person-002")["stripe_customer_ids"][0]
    for _ in range(3):
        requests.get(f"{sandbox.base_url}/stripe/v1/customers/{customer}", auth=("sk_test_x", ""), timeout=10)
    rows = sandbox.request_counts()
    assert {
        "api": "stripe",
        "method": "GET",
        "route": "/v1/customers/{customer}",
        "status": 200,
        "idempotent_replay": False,
        "count": 3,
    } in rows

"""The failure alert: providers-http's HttpNotifier sends it to a real local HTTP server, and no
identifier reaches the payload or the log."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.http.notifications import HttpNotifier
from airflow.sdk import DAG
from airflow.serialization.serialized_objects import DagSerialization

from gdpr_erasure.notifiers import DEFAULT_ALERT_CONN_ID, MAX_REASON_LENGTH, ComplianceAlertNotifier

EMAIL, PHONE, CUSTOMER = "Jane.Doe+gdpr@example.com", "+14155550100", "cus_NffrFeUfNV2Hib"


class Receiver:
    """A webhook receiver on a free loopback port that records what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    {"path": self.path, "content_type": self.headers["Content-Type"], "body": body}
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.received]


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{DEFAULT_ALERT_CONN_ID.upper()}",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": receiver.port, "schema": "http"}),
    )
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join(timeout=5)


def failure_context(message: str | None = None) -> dict[str, Any]:
    """A task failure's context whose exception and run id quote a person."""
    message = message or f"No such customer: '{CUSTOMER}' (email {EMAIL}, phone {PHONE})"
    return {
        # Rendered as native objects, as the pipeline's DAG is.
        "dag": DAG(dag_id="gdpr_erasure", schedule=None, render_template_as_native_obj=True),
        "run_id": f"manual__{EMAIL}",
        "ti": SimpleNamespace(task_id="erase_batch.erase_stripe"),
        "exception": RuntimeError(message),
    }


def assert_no_identifier(text: str) -> None:
    for fragment in ("jane", "Jane", "example.com", "4155550100", CUSTOMER):
        assert fragment not in text


def test_sending_is_the_http_providers_notifier():
    assert issubclass(ComplianceAlertNotifier, HttpNotifier)
    notifier = ComplianceAlertNotifier()
    assert (notifier.http_conn_id, notifier.method) == ("gdpr_alerts", "POST")
    assert notifier.extra_options == {"timeout": 30}


def test_the_alert_reaches_the_receiver_scrubbed(receiver, capsys):
    ComplianceAlertNotifier(endpoint="hooks/compliance")(failure_context())

    [request] = receiver.received
    assert request["path"] == "/hooks/compliance"
    assert request["content_type"] == "application/json"
    assert_no_identifier(request["body"].decode())
    [alert] = receiver.payloads()
    assert alert == {
        "source": "gdpr-erasure",
        "dag_id": "gdpr_erasure",
        "run_id": "[redacted]",  # the local part takes the prefix with it
        "task_id": "erase_batch.erase_stripe",
        "reason": "No such customer: '[redacted]' (email [redacted], phone [redacted])",
    }
    log = capsys.readouterr().out  # Airflow's structlog writes task and notifier logs there
    assert "compliance alert sent to gdpr_alerts" in log
    assert_no_identifier(log)


def test_the_async_path_sends_the_same_alert(receiver):
    notifier = ComplianceAlertNotifier()
    asyncio.run(notifier.async_notify(failure_context()))
    [alert] = receiver.payloads()
    assert alert["reason"] == "No such customer: '[redacted]' (email [redacted], phone [redacted])"
    assert_no_identifier(json.dumps(alert))


def test_an_exception_text_is_sent_as_it_is_never_rendered_as_a_template(receiver):
    """The payload is not a template field: the second call must not render the first alert."""
    notifier = ComplianceAlertNotifier()
    for _ in range(2):
        notifier(failure_context("bad value {{ 7 * 7 }} {{ conn.gdpr_hash_key.password }}"))
    assert [a["reason"] for a in receiver.payloads()] == [
        "bad value {{ 7 * 7 }} {{ conn.gdpr_hash_key.password }}"
    ] * 2


def test_without_the_connection_the_alert_is_logged_loudly_and_the_callback_returns(monkeypatch, capsys):
    monkeypatch.delenv(f"AIRFLOW_CONN_{DEFAULT_ALERT_CONN_ID.upper()}", raising=False)
    ComplianceAlertNotifier()(failure_context())  # no exception
    log = capsys.readouterr().out
    [line] = [line for line in log.splitlines() if "COMPLIANCE ALERT" in line]
    assert "[error" in line
    assert "no gdpr_alerts connection" in line
    assert "erase_batch.erase_stripe" in line
    assert_no_identifier(log)


def test_a_receiver_error_fails_the_callback_and_keeps_the_alert_in_the_log(receiver, capsys):
    receiver.status = 500
    with pytest.raises(Exception, match="500"):
        ComplianceAlertNotifier()(failure_context())
    assert len(receiver.received) == 1
    log = capsys.readouterr().out
    assert "COMPLIANCE ALERT (sending to gdpr_alerts failed)" in log
    assert_no_identifier(log)


def test_a_long_reason_is_cut_after_it_is_scrubbed():
    """Cut first, an email across the limit would reach the receiver as ``jane.doe@exa``."""
    padding = "x" * (MAX_REASON_LENGTH - 5)
    alert = ComplianceAlertNotifier().alert(failure_context(f"{padding} {EMAIL}"))
    assert alert["reason"] == f"{padding} [red"
    assert_no_identifier(alert["reason"])


def test_dag_test_callbacks_with_a_serialized_dag_still_send_the_alert(receiver):
    """``dag.test()`` hands DAG callbacks a SerializedDAG, which has no template environment."""
    context = failure_context()
    context["dag"] = DagSerialization.from_dict(DagSerialization.to_dict(context["dag"]))
    assert not hasattr(context["dag"], "get_template_env")
    ComplianceAlertNotifier(endpoint="hooks/compliance")(context)
    [request] = receiver.received
    assert request["path"] == "/hooks/compliance"
    assert receiver.payloads()[0]["dag_id"] == "gdpr_erasure"


@pytest.mark.parametrize(
    "run_id",
    [
        "manual__2026-11-29T12:02:46.681218+00:00",
        "scheduled__2026-11-29T00:00:00+00:00",
        "manual__2026-11-29T12:02:46+00:00_Xk3e9QaZ",
    ],
)
def test_run_ids_airflow_made_are_kept_whole(run_id):
    """The scrubber would take a timestamp's digits for a phone; the alert must name the run."""
    context = failure_context()
    context["run_id"] = run_id
    assert ComplianceAlertNotifier().alert(context)["run_id"] == run_id


@pytest.mark.parametrize(
    "tail",
    [f"_{EMAIL}", f"_{PHONE}", "4155550100"],
)
def test_what_follows_airflows_timestamp_is_scrubbed(tail):
    context = failure_context()
    context["run_id"] = f"manual__2026-11-29T12:02:46+00:00{tail}"
    run_id = ComplianceAlertNotifier().alert(context)["run_id"]
    assert run_id.startswith("manual__2026-11-29T12:02:46+00:00")
    assert_no_identifier(run_id)


def test_digits_in_place_of_the_fraction_of_a_second_are_not_taken_for_a_timestamp():
    context = failure_context()
    context["run_id"] = "manual__2026-11-29T12:02:46.4155550100+00:00"
    assert_no_identifier(ComplianceAlertNotifier().alert(context)["run_id"])

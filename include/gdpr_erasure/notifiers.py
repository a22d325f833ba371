"""Alerting the compliance team when a run fails or requests near the legal deadline."""

from __future__ import annotations

from typing import Any

from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk import BaseHook, BaseNotifier, Context
from airflow.sdk.exceptions import AirflowNotFoundException

from gdpr_erasure.pii import scrub

DEFAULT_ALERT_CONN_ID = "gdpr_alerts"


class ComplianceAlertNotifier(BaseNotifier):
    """POST a JSON alert (DAG, run, failed task, reason; never an identifier) to the HTTP
    connection ``gdpr_alerts`` (e.g. a Slack or PagerDuty webhook URL as its host). Without that
    connection the alert is only logged, loudly.

    :param http_conn_id: HTTP connection of the alert receiver.
    :param endpoint: path appended to the connection's host.
    """

    template_fields = ("endpoint",)

    def __init__(self, http_conn_id: str = DEFAULT_ALERT_CONN_ID, endpoint: str = "") -> None:
        super().__init__()
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint

    def alert(self, context: Context) -> dict[str, Any]:
        ti = context.get("ti") or context.get("task_instance")
        exception = context.get("exception")
        return {
            "source": "gdpr-erasure",
            "dag_id": context["dag"].dag_id if context.get("dag") else None,
            "run_id": context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "reason": scrub(str(exception))[:2000] if exception else context.get("reason", "run failed"),
        }

    def notify(self, context: Context) -> None:
        alert = self.alert(context)
        try:
            BaseHook.get_connection(self.http_conn_id)
        except AirflowNotFoundException:
            self.log.error("COMPLIANCE ALERT (no %s connection to send it to): %s", self.http_conn_id, alert)
            return
        response = HttpHook(method="POST", http_conn_id=self.http_conn_id).run(
            self.endpoint, json=alert, extra_options={"timeout": 30}
        )
        self.log.warning(
            "compliance alert sent to %s (HTTP %s): %s", self.http_conn_id, response.status_code, alert
        )

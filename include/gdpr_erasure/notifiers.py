"""Alerting the compliance team when a run fails or requests near the legal deadline."""

from __future__ import annotations

import re
from typing import Any

from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.http.notifications import HttpNotifier
from airflow.sdk import BaseHook, Context
from airflow.sdk.exceptions import AirflowNotFoundException

from gdpr_erasure.pii import scrub

DEFAULT_ALERT_CONN_ID = "gdpr_alerts"
# How a run id Airflow made begins (manual__2026-11-29T12:02:46.681218+00:00): no identifier in it,
# and the scrubber would take the timestamp's digits for a phone number. The rest (Airflow's random
# suffix, or anything given by hand) is scrubbed like every other value.
_AIRFLOW_RUN_ID = re.compile(r"[a-z_]+__\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}:\d{2}")
#: Longest alert reason sent: a traceback's first line is enough to find the task log.
MAX_REASON_LENGTH = 2000


class ComplianceAlertNotifier(HttpNotifier):
    """POST a JSON alert (DAG, run, failed task, reason; never an identifier) to the HTTP
    connection ``gdpr_alerts`` (e.g. a Slack or PagerDuty webhook URL as its host). Without that
    connection the alert is only logged, loudly.

    Sending is providers-http's :class:`HttpNotifier` (its ``HttpHook``, auth, headers and
    ``extra_options``, sync and async). What is ours, and why it is not a plain ``HttpNotifier``
    with a templated ``json``:

    * the payload is built from the callback's context, every value passed through
      :func:`gdpr_erasure.pii.scrub` (all but the timestamp of a run id Airflow made): an
      exception's message can quote an email or a phone, and an alert receiver (Slack, a pager)
      is outside the erasure's reach;
    * the payload is not a template field: Jinja would otherwise render an exception's text;
    * a missing connection is logged at ERROR with the alert and the callback returns: the
      alert is optional (README), and a crashing callback would only bury the failure it reports.

    :param http_conn_id: HTTP connection of the alert receiver.
    :param endpoint: path appended to the connection's host.
    :param kwargs: passed to :class:`HttpNotifier` (``headers``, ``extra_options``, ``method``).
    """

    # Not "json" nor "data": BaseNotifier renders template fields (and merges them into the
    # context) before notify, and the payload holds an exception's text.
    template_fields = ("http_conn_id", "endpoint", "headers", "extra_options")

    def __init__(self, http_conn_id: str = DEFAULT_ALERT_CONN_ID, endpoint: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("extra_options", {"timeout": 30})
        super().__init__(http_conn_id=http_conn_id, endpoint=endpoint, **kwargs)

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render our fields; with the default Jinja environment if the DAG in ``context`` has none.

        ``dag.test()`` runs DAG callbacks with a ``SerializedDAG``, which has no
        ``get_template_env`` (Airflow 3.3.2), so every notifier's callback crashed there before
        sending: the environment does not matter for our fields, the alert does.

        :param context: the callback's Airflow context.
        :param jinja_env: the Jinja environment to render with, if the caller has one.
        """
        if jinja_env is None and not hasattr(context.get("dag"), "get_template_env"):
            jinja_env = self.get_template_env()
        super().render_template_fields(context, jinja_env)

    def alert(self, context: Context) -> dict[str, Any]:
        """The alert for ``context``: where the failure is and why, scrubbed of identifiers.

        :param context: the callback's Airflow context.
        """
        ti = context.get("ti") or context.get("task_instance")
        exception = context.get("exception")
        reason = str(exception) if exception else context.get("reason") or "run failed"
        alert = {
            "source": "gdpr-erasure",
            "dag_id": context["dag"].dag_id if context.get("dag") else None,
            "run_id": context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "reason": reason,
        }
        # Every value, not only the reason: a run id given by hand is free text too.
        alert = {key: scrub(str(value)) if value is not None else None for key, value in alert.items()}
        made = _AIRFLOW_RUN_ID.match(str(context.get("run_id")))
        if made:
            alert["run_id"] = made.group() + scrub(context["run_id"][made.end() :])
        # Cut after scrubbing: a cut email or phone may no longer look like one.
        alert["reason"] = alert["reason"][:MAX_REASON_LENGTH]
        return alert

    def _no_receiver(self, alert: dict[str, Any]) -> None:
        self.log.error("COMPLIANCE ALERT (no %s connection to send it to): %s", self.http_conn_id, alert)

    def notify(self, context: Context) -> None:
        """Send the alert with :meth:`HttpNotifier.notify` (an HTTP error raises, after a log).

        :param context: the callback's Airflow context.
        """
        alert = self.alert(context)
        try:
            BaseHook.get_connection(self.http_conn_id)
        except AirflowNotFoundException:
            return self._no_receiver(alert)
        self.json = alert
        try:
            super().notify(context)
        except Exception:
            self.log.error("COMPLIANCE ALERT (sending to %s failed): %s", self.http_conn_id, alert)
            raise
        self.log.warning("compliance alert sent to %s: %s", self.http_conn_id, alert)

    async def async_notify(self, context: Context) -> None:
        """The same alert through :meth:`HttpNotifier.async_notify` (notifiers run in the triggerer).

        :param context: the Airflow context the notifier was given.
        """
        alert = self.alert(context)
        try:
            # Not BaseHook.get_connection: a synchronous call to the supervisor from the event loop.
            await get_async_connection(conn_id=self.http_conn_id)
        except AirflowNotFoundException:
            return self._no_receiver(alert)
        self.json = alert
        try:
            await super().async_notify(context)
        except Exception:
            self.log.error("COMPLIANCE ALERT (sending to %s failed): %s", self.http_conn_id, alert)
            raise
        self.log.warning("compliance alert sent to %s: %s", self.http_conn_id, alert)

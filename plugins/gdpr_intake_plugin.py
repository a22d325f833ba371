"""Mount the signed GDPR erasure intake in Airflow's API server under ``/gdpr``.

``POST /gdpr/v1/requests`` and ``GET /gdpr/v1/requests/{id}`` (see docs/intake.md). Airflow does
not authenticate plugin apps: the intake checks an HMAC signature on every call itself, with the
secrets of the ``gdpr_intake`` connection. Airflow imports this file in every component; building
the app opens nothing (no connection, no database) until the API server gets a call.
Limits can be tuned with ``GDPR_INTAKE_*`` environment variables (``IntakeSettings.from_env``).

The mount sees ``/gdpr/...`` only: ``/gdpr`` itself (with a query string, say
``/gdpr?email=...``) would reach Airflow's UI catch-all and its access log. A root middleware,
:class:`~gdpr_erasure.intake.app.BarePrefixGuard`, answers those calls (400 ``query_not_allowed``
or 404 ``not_found``) and blanks the query string before the access log reads it.

``AirflowPlugin`` comes from ``airflow.plugins_manager``, as Airflow 3.3 documents for plugin
files: ``airflow.sdk`` does not export a plugin class.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from gdpr_erasure.intake.app import BarePrefixGuard, create_app
from gdpr_erasure.intake.settings import IntakeSettings

URL_PREFIX = "/gdpr"


class GdprIntakePlugin(AirflowPlugin):
    name = "gdpr_intake"
    fastapi_apps = [
        {
            "app": create_app(IntakeSettings.from_env()),
            "url_prefix": URL_PREFIX,
            "name": "GDPR erasure intake",
        },
    ]
    fastapi_root_middlewares = [
        {
            "middleware": BarePrefixGuard,
            "args": [],
            "kwargs": {"prefix": URL_PREFIX},
            "name": "GDPR erasure intake: calls to /gdpr outside the mount",
        },
    ]

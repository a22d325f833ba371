"""Airflow plugin: the auditor page in the UI: the ledger paged, its chain status, figures and
charts, a request's drill-down and signed receipt, and "was this person erased?".

The app checks the UI's JWT and asks Airflow's auth manager whether the user may read ``GDPR Audit``
(``gdpr_erasure.auditor.app``; docs/deployment.md, "Auditor access").
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from gdpr_erasure.auditor.app import create_app

URL_PREFIX = "/gdpr-audit"


class GdprAuditorPlugin(AirflowPlugin):
    name = "gdpr_auditor"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "GDPR audit ledger"}]
    external_views = [
        {
            "name": "GDPR audit",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "gdpr-audit",
        }
    ]

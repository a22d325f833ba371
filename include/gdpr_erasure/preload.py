"""Import what every erasure task needs, ahead of time (see config/airflow_local_settings.py).

Each task process parses the DAG file, which imports the operators, hooks and provider SDKs;
in a process forked from one that already imported them, that parse is nearly free.

Airflow's own pre-import (``[dag_processor] parsing_pre_import_modules``) does not cover this:
it runs only in the DAG processor, before it forks a parsing process, and imports only the
``airflow.*`` modules the DAG file names. Task processes are forked by the LocalExecutor or the
Celery worker, and most of the import time is this package and the Stripe and Twilio SDKs.
``airflow_local_settings`` is the hook Airflow gives every process for this.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

MODULES = (
    "gdpr_erasure.operators.claim",
    "gdpr_erasure.operators.ledger_record",
    "gdpr_erasure.operators.preflight",
    "gdpr_erasure.operators.resolve",
    "gdpr_erasure.operators.retention",
    "gdpr_erasure.operators.segment",
    "gdpr_erasure.operators.stripe",
    "gdpr_erasure.operators.summary",
    "gdpr_erasure.operators.twilio",
    "gdpr_erasure.sensors.segment",
    "gdpr_erasure.sensors.stripe",
    "gdpr_erasure.sensors.twilio",
    "gdpr_erasure.triggers.proof",
    "gdpr_erasure.notifiers",
    "stripe",
    "twilio.rest",
    # The compliance_db connection's URL is built by it in every task (store/engine.py).
    "airflow.providers.postgres.hooks.postgres",
)


def preload() -> list[str]:
    """Import :data:`MODULES`; a module that fails to import is logged and left to the task."""
    loaded = []
    for name in MODULES:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # never stop an Airflow process from starting
            log.warning("gdpr_erasure preload: %s not imported (%s)", name, exc)
    return loaded

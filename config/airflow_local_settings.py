"""Airflow local settings of the GDPR erasure deployment ($AIRFLOW_HOME/config/, copied there
by the Dockerfile; every Airflow process imports this module when it starts).

It preloads the pipeline: the operators, sensors, triggers and hooks and the SDKs they use
(Stripe, Twilio, the HTTP provider) are imported once in each long-lived process. Task
processes are forked from the scheduler (LocalExecutor) or the Celery worker, so they inherit
those modules instead of importing them again for every task, which cost about 0.35 s of CPU
per task (docs/benchmarks.md). Without the package installed this does nothing.
"""

from __future__ import annotations


def _preload() -> None:
    try:
        from gdpr_erasure.preload import preload
    except ImportError:
        return
    preload()


_preload()

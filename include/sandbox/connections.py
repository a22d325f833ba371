"""Airflow connections that point the pipeline's hooks at a running sandbox.

The sandbox accepts only its own accounts' ids (``GET /_sandbox/people`` lists them under
``accounts``) and any test credential. The demo, the tests and the benchmarks use these
connections, and so does ``gdpr-erasure deploy init`` when ``GDPR_SANDBOX_URL`` is set (the
compose file's ``sandbox`` profile). Plain data: this module imports neither the pipeline nor
Airflow.
"""

from __future__ import annotations

from typing import Any


def sandbox_connections(base_url: str, accounts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``stripe_default``, ``twilio_default`` and ``segment_default`` for the sandbox at ``base_url``,
    in Airflow's JSON form (``AIRFLOW_CONN_*`` values; ``extra`` as a dict).

    :param base_url: the sandbox's base URL as the Airflow components reach it.
    :param accounts: ``accounts`` of ``GET /_sandbox/people``.
    """
    stripe, twilio, segment = accounts["stripe"], accounts["twilio"], accounts["segment"]
    return {
        "stripe_default": {
            "conn_type": "stripe",
            "password": "sk_test_sandbox_key",
            "extra": {"api_base": f"{base_url}/stripe", "account_id": stripe["account_id"]},
        },
        "twilio_default": {
            "conn_type": "twilio",
            "login": twilio["account_sid"],
            "password": "sandbox-auth-token",
            "extra": {"api_base": f"{base_url}/twilio", "memory_store_id": twilio["memory_store_id"]},
        },
        "segment_default": {
            "conn_type": "segment",
            "host": f"{base_url}/segment/api",
            "password": "sandbox-public-api-token",
            "extra": {
                "space_id": segment["space_id"],
                "profile_api_token": "sandbox-profile-token",
                "profile_api_url": f"{base_url}/segment/profiles",
                "check_user_id": segment["check_user_id"],
            },
        },
    }

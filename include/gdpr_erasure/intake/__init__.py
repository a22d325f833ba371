"""The signed intake API: how erasure requests enter the intake table from outside.

One FastAPI app (:func:`gdpr_erasure.intake.app.create_app`) served two ways from the same code:
mounted under ``/gdpr`` in Airflow's API server by ``plugins/gdpr_intake_plugin.py``, or standalone
with ``gdpr-erasure intake serve``. Airflow does not authenticate plugin apps, so every call is
authenticated here with an HMAC-SHA256 signature (:mod:`gdpr_erasure.intake.signature`).

Modules, one concern each:

* :mod:`~gdpr_erasure.intake.signature` - the signature scheme, shared by server and client;
* :mod:`~gdpr_erasure.intake.models` - request and response shapes (native and OpenDSR 2.0) and
  their validation;
* :mod:`~gdpr_erasure.intake.errors` - the machine-readable errors (``application/problem+json``);
* :mod:`~gdpr_erasure.intake.settings` - limits, and the signing secrets from the ``gdpr_intake``
  connection;
* :mod:`~gdpr_erasure.intake.service` - what a valid request does to the compliance store;
* :mod:`~gdpr_erasure.intake.app` - the HTTP layer; :mod:`~gdpr_erasure.intake.openapi` - its
  OpenAPI document;
* :mod:`~gdpr_erasure.intake.server` - the standalone uvicorn server;
* :mod:`~gdpr_erasure.intake.client` - a signing client (``gdpr-erasure submit``, the demo);
* :mod:`~gdpr_erasure.intake.cli` - the ``intake`` and ``submit`` commands.
"""

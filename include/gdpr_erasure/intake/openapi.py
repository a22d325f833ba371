"""The intake's OpenAPI 3.1 document, generated from the app and the pydantic models.

The endpoints read the raw body themselves (the signature must be checked before parsing), so
FastAPI cannot infer bodies and answers; this module states them. The document is committed as
``docs/intake-openapi.json`` (a test checks it matches) and printed by
``gdpr-erasure intake openapi``; the app does not serve it unauthenticated.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from gdpr_erasure.intake import models
from gdpr_erasure.intake.app import API_TITLE, API_VERSION, REPLAYED_HEADER, STATUS_PATH, SUBMIT_PATH
from gdpr_erasure.intake.errors import ERRORS, PROBLEM_CONTENT_TYPE
from gdpr_erasure.intake.signature import DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER

_REF = "#/components/schemas/{model}"

DESCRIPTION = f"""\
Receives GDPR erasure requests (right to be forgotten) for Stripe, Twilio and Twilio Segment and
puts them in the compliance store's intake table.

Served under `/gdpr` in Airflow's API server (plugin `gdpr_intake`) or standalone
(`gdpr-erasure intake serve`); paths below are relative to that root.

**Authentication.** Every call carries `{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex>`, where
`v1` is HMAC-SHA256, keyed with a signing secret, of `<t>.` followed by the raw body (POST) or by
`GET <path>` (GET, e.g. `GET /v1/requests/req-1`). Timestamps more than
{DEFAULT_TOLERANCE_SECONDS} s from the server clock are refused. See docs/intake.md.

**Idempotency.** `request_id` (or OpenDSR `subject_request_id`) is the caller's key: the same id
with the same identifiers answers the same request again (header `{REPLAYED_HEADER}: true`), with
different identifiers 409 `request_id_conflict`.

Answers never contain the identifiers. Errors are `{PROBLEM_CONTENT_TYPE}` with a
machine-readable `code`.
"""


def _problem(description: str, codes: list[str]) -> dict[str, Any]:
    return {
        "description": f"{description}. Codes: {', '.join(f'`{c}`' for c in codes)}",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }


def _codes(status: int) -> list[str]:
    return [code for code, (code_status, _) in ERRORS.items() if code_status == status]


def _state_content() -> dict[str, Any]:
    return {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": _REF.format(model="ErasureRequestState")},
                    {"$ref": _REF.format(model="OpenDsrRequestState")},
                ]
            }
        }
    }


def build_openapi(app: FastAPI | None = None) -> dict[str, Any]:
    """The document for the intake (``app`` is only used for its title and version)."""
    title = app.title if app is not None else API_TITLE
    version = app.version if app is not None else API_VERSION
    _, schemas = models_json_schema(
        [
            (models.ErasureRequestBody, "validation"),
            (models.OpenDsrRequestBody, "validation"),
            (models.ErasureRequestState, "serialization"),
            (models.OpenDsrRequestState, "serialization"),
            (models.Problem, "serialization"),
        ],
        ref_template=_REF,
    )
    common_errors = {
        "401": _problem("Not authentic", _codes(401)),
        "503": _problem("Not configured or the store is unreachable (not caused by the input)", _codes(503)),
    }
    submit = {
        "operationId": "submitErasureRequest",
        "summary": "Submit an erasure request (native or OpenDSR 2.0 shape)",
        "description": "The body is the native shape, or OpenDSR 2.0 when it has `subject_request_id`, "
        "`subject_request_type` or `subject_identities`; the answer comes in the same shape.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": _REF.format(model="ErasureRequestBody")},
                            {"$ref": _REF.format(model="OpenDsrRequestBody")},
                        ]
                    }
                }
            },
        },
        "responses": {
            "202": {
                "description": "Accepted (or accepted before: same answer, header "
                f"`{REPLAYED_HEADER}: true`)",
                "headers": {
                    "Location": {"schema": {"type": "string"}, "description": "The status URL"},
                    REPLAYED_HEADER: {
                        "schema": {"type": "string", "enum": ["true"]},
                        "description": "Present when the request id was already known",
                    },
                },
                "content": _state_content(),
            },
            "400": _problem("Malformed", _codes(400)),
            **common_errors,
            "409": _problem("The request id names other identifiers", _codes(409)),
            "413": _problem("Body too large", _codes(413)),
            "415": _problem("Not application/json", _codes(415)),
            "422": _problem("Invalid content", _codes(422)),
        },
    }
    status = {
        "operationId": "getErasureRequest",
        "summary": "Status and expected completion date of an erasure request",
        "description": "Answers in the shape the request was submitted in. Sign `GET <path>`.",
        "parameters": [
            {
                "name": "request_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": models.REQUEST_ID_PATTERN, "maxLength": 64},
            }
        ],
        "responses": {
            "200": {"description": "The request's state", "content": _state_content()},
            "400": _problem("Query string given", ["query_not_allowed"]),
            **common_errors,
            "404": _problem("No such request", ["request_not_found"]),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": DESCRIPTION},
        "paths": {SUBMIT_PATH: {"post": submit}, STATUS_PATH: {"get": status}},
        "components": {
            "schemas": dict(sorted(schemas["$defs"].items())),
            "securitySchemes": {
                "gdprSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SIGNATURE_HEADER,
                    "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + signed content>",
                }
            },
        },
        "security": [{"gdprSignature": []}],
    }


def openapi_json(app: FastAPI | None = None) -> str:
    """The document as committed in ``docs/intake-openapi.json``."""
    # ASCII: the email pattern lists invisible characters, which are better read as \u escapes.
    return json.dumps(build_openapi(app), indent=2, ensure_ascii=True) + "\n"


def install(app: FastAPI) -> FastAPI:
    """Make ``app.openapi()`` return this document (for tools that ask the app)."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app

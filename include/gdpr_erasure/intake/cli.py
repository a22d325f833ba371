"""The ``intake`` and ``submit`` commands of ``gdpr-erasure``.

* ``gdpr-erasure intake serve --port P`` - the standalone intake server;
* ``gdpr-erasure intake status ID`` - a request's status, through the intake;
* ``gdpr-erasure intake openapi`` - print the OpenAPI document;
* ``gdpr-erasure submit --email ...`` - sign and send an erasure request.

Heavy imports (FastAPI, uvicorn, Airflow) happen inside the commands, so the rest of the CLI
stays quick. Signing secrets are never command-line arguments (``ps`` shows those): they come
from the ``gdpr_intake`` connection or from an environment variable named with ``--secret-env``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def register_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``intake`` and ``submit`` to the ``gdpr-erasure`` sub-commands."""
    intake = commands.add_parser("intake", help="the signed intake API")
    intake_commands = intake.add_subparsers(dest="intake_command", required=True)

    serve = intake_commands.add_parser("serve", help="run the intake standalone (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8980, help="TCP port (0 picks a free one)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--db-url", help="compliance store URL (default: as for 'db')")
    serve.add_argument("--conn-id", default="gdpr_intake", help="connection with the signing secrets")
    serve.add_argument("--tolerance-seconds", type=int, default=300, help="signature age limit (300)")
    serve.add_argument("--max-body-bytes", type=int, default=64 * 1024, help="body size limit (65536)")
    serve.add_argument("--secrets-ttl-seconds", type=float, default=30.0, help="secrets cache time (30)")
    serve.add_argument("--no-init-db", action="store_true", help="do not create the store's tables")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_cmd_serve)

    status = intake_commands.add_parser("status", help="a request's status, asked through the intake")
    status.add_argument("request_id")
    _client_arguments(status)
    status.set_defaults(func=_cmd_status)

    openapi = intake_commands.add_parser("openapi", help="print the intake's OpenAPI document")
    openapi.add_argument("--output", help="write to this file instead of stdout")
    openapi.set_defaults(func=_cmd_openapi)

    submit = commands.add_parser(
        "submit",
        help="sign and send an erasure request to the intake",
        description="Identifiers given as options end up in shell history and 'ps'; "
        "prefer --json - and a here-document or pipe.",
    )
    submit.add_argument("--request-id", help="idempotency id (default: a random UUID)")
    submit.add_argument("--email")
    submit.add_argument("--phone", help="E.164, e.g. +14155550123")
    submit.add_argument("--stripe-customer-id")
    submit.add_argument("--user-id")
    submit.add_argument(
        "--json", metavar="FILE", help="the request body (native or OpenDSR) from FILE, or - for stdin"
    )
    _client_arguments(submit)
    submit.set_defaults(func=_cmd_submit)


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="intake base URL, e.g. http://127.0.0.1:8080/gdpr (default: the connection's extra 'url')",
    )
    parser.add_argument("--conn-id", default="gdpr_intake", help="connection with the secret (and URL)")
    parser.add_argument(
        "--secret-env", metavar="VAR", help="take the signing secret from this environment variable instead"
    )


def _client(args: argparse.Namespace):
    from gdpr_erasure.intake.client import IntakeClient

    if args.secret_env:
        secret = os.environ.get(args.secret_env)
        if not secret:
            raise SystemExit(f"gdpr-erasure: environment variable {args.secret_env} is empty")
        if not args.url:
            raise SystemExit("gdpr-erasure: --url is required with --secret-env")
        return IntakeClient(args.url, secret)
    try:
        return IntakeClient.from_connection(args.conn_id, args.url)
    except Exception as exc:  # AirflowNotFoundException, ValueError: messages hold no secret
        raise SystemExit(f"gdpr-erasure: {exc}") from None


def _cmd_serve(args: argparse.Namespace) -> int:
    from gdpr_erasure.intake.server import serve
    from gdpr_erasure.intake.settings import IntakeSettings

    settings = IntakeSettings(
        conn_id=args.conn_id,
        db_url=args.db_url,
        tolerance_seconds=args.tolerance_seconds,
        max_body_bytes=args.max_body_bytes,
        secrets_ttl_seconds=args.secrets_ttl_seconds,
    )
    return serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        init_db=not args.no_init_db,
        log_level=args.log_level,
    )


def _run_call(call) -> int:
    from gdpr_erasure.intake.client import IntakeClientError

    try:
        answer = call()
    except IntakeClientError as exc:
        print(f"gdpr-erasure: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # requests' connection errors; their text names the URL only
        print(f"gdpr-erasure: cannot reach the intake ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    return _run_call(lambda: client.status(args.request_id))


def _cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.json:
        if any((args.email, args.phone, args.stripe_customer_id, args.user_id, args.request_id)):
            raise SystemExit("gdpr-erasure: give either --json or identifier options, not both")
        stream = sys.stdin if args.json == "-" else open(args.json, encoding="utf-8")  # noqa: SIM115
        with stream:
            raw = stream.read().encode("utf-8")
        return _run_call(lambda: client.post(raw).body)
    return _run_call(
        lambda: client.submit(
            args.request_id,
            email=args.email,
            phone=args.phone,
            stripe_customer_id=args.stripe_customer_id,
            user_id=args.user_id,
        )
    )


def _cmd_openapi(args: argparse.Namespace) -> int:
    from gdpr_erasure.intake.openapi import openapi_json

    text = openapi_json()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0

"""The ``gdpr-erasure`` command line: operate the compliance store and the API sandbox."""

from __future__ import annotations

import argparse
import sys


def _cmd_sandbox_serve(args: argparse.Namespace) -> int:
    # Imported lazily: the sandbox is a development tool, not a runtime dependency of the pipeline.
    from sandbox.server import serve

    return serve(
        host=args.host,
        port=args.port,
        seed=args.seed,
        people=args.people,
        faults=args.fault,
        regulation_seconds=args.regulation_seconds,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdpr-erasure", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="local emulator of the Stripe, Twilio and Segment APIs")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_commands.add_parser("serve", help="run the sandbox on 127.0.0.1")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8999, help="TCP port (0 picks a free one)")
    serve.add_argument("--seed", type=int, default=1, help="random seed for the generated people")
    serve.add_argument("--people", type=int, default=20, help="how many generated people to seed")
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="API:KNOB=VALUE",
        help="fault knob, e.g. stripe:rate_429=0.2 or twilio:latency_ms=100 (repeatable)",
    )
    serve.add_argument(
        "--regulation-seconds",
        type=float,
        default=3.0,
        help="how long a Segment regulation takes from INITIALIZED to FINISHED",
    )
    serve.set_defaults(func=_cmd_sandbox_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

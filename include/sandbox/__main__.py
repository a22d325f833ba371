"""``python -m sandbox serve``: run the sandbox without the ``gdpr-erasure`` CLI.

The options mirror ``gdpr-erasure sandbox serve``. The sandbox deliberately does not import
``gdpr_erasure``: it is usable on its own.
"""

from __future__ import annotations

import argparse
import sys

from sandbox.server import serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the sandbox on a loopback address")
    run.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8999, help="TCP port (0 picks a free one)")
    run.add_argument("--seed", type=int, default=1, help="random seed for the generated people")
    run.add_argument("--people", type=int, default=20, help="how many generated people to seed")
    run.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="API:KNOB=VALUE",
        help="fault knob, e.g. stripe:rate_429=0.2 or twilio:latency_ms=100 (repeatable)",
    )
    run.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="API:LIMIT=VALUE",
        help="provider limit, e.g. stripe:rate=25 (per second) or twilio:concurrency=10 (repeatable)",
    )
    run.add_argument(
        "--regulation-seconds",
        type=float,
        default=3.0,
        help="how long a Segment regulation takes from INITIALIZED to FINISHED",
    )
    run.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="also bind a non-loopback --host (a private container network only; never a public one)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return serve(
        host=args.host,
        port=args.port,
        seed=args.seed,
        people=args.people,
        faults=args.fault,
        regulation_seconds=args.regulation_seconds,
        allow_non_loopback=args.allow_non_loopback,
        limits=args.limit,
    )


if __name__ == "__main__":
    sys.exit(main())

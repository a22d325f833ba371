"""The ``policy`` commands of ``gdpr-erasure``.

* ``gdpr-erasure policy check [FILE]`` - validate a policy file (default: the configured one)
  and print its rules; on error the one ``FILE:LINE: ...`` line, exit 1;
* ``gdpr-erasure policy show [FILE]`` - the effective policy as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys


def register_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``policy check`` and ``policy show`` to the ``gdpr-erasure`` sub-commands."""
    policy = commands.add_parser("policy", help="the erasure policy: what is kept, why and for how long")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    where = (
        "the policy file (default: the Airflow Variable gdpr_erasure_policy, else "
        "$GDPR_ERASURE_POLICY, else the shipped default)"
    )
    check = policy_commands.add_parser(
        "check", help="validate a policy file and print its rules; exit 1 naming the line at fault"
    )
    check.add_argument("file", nargs="?", metavar="FILE", help=where)
    check.set_defaults(func=_cmd_check)
    show = policy_commands.add_parser("show", help="print the effective policy as JSON, with its digest")
    show.add_argument("file", nargs="?", metavar="FILE", help=where)
    show.set_defaults(func=_cmd_show)


def _load(args: argparse.Namespace):
    from gdpr_erasure.policy import PolicyError, load_policy, policy_location

    try:
        return load_policy(args.file or policy_location())
    except PolicyError as exc:
        # FILE:LINE: first, as compilers write it: editors and CI annotations jump to the line.
        print(exc, file=sys.stderr)
        return None


def _cmd_check(args: argparse.Namespace) -> int:
    policy = _load(args)
    if policy is None:
        return 1
    print(f"policy OK: {policy.source} ({policy.digest})")
    rows = [
        (name, rule.action, rule.retain_for or "", rule.review_after or "", _short(rule.legal_basis or ""))
        for name, rule in policy.rules()
    ]
    header = ("rule", "action", "kept for", "review after", "legal basis")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        print("  " + "  ".join([*cells, row[4]]).rstrip())
    return 0


def _short(text: str, limit: int = 60) -> str:
    """A legal basis cut to fit the table (``policy show`` prints it whole)."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _cmd_show(args: argparse.Namespace) -> int:
    policy = _load(args)
    if policy is None:
        return 1
    print(json.dumps(policy.as_dict(), indent=2))
    return 0

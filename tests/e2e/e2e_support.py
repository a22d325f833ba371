"""One real end-to-end run shared by the evidence tests (leaks, receipts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from devstack.localstack import LocalStack, local_stack
from gdpr_erasure.receipts import SigningKey, generate_signing_key

PEOPLE = ("person-002", "multi_stripe", "many_messages", "no_segment")


def forms(value: str) -> set[str]:
    """The ways an identifier can appear in a file: as is, case-changed, URL-encoded."""
    variants = {value, value.lower(), value.upper(), quote(value, safe=""), quote(value), quote_plus(value)}
    if value.startswith("+"):
        variants |= {value[1:], "%2B" + value[1:], "%2b" + value[1:]}
    return {v for v in variants if len(v) >= 8}


class FinishedStack:
    def __init__(self, root: Path, stack: LocalStack, identifiers, code, counts, public_pem):
        self.root, self.stack, self.identifiers = root, stack, identifiers
        self.code, self.counts, self.public_pem = code, counts, public_pem


@contextmanager
def signing_stack(root: Path) -> Iterator[tuple[LocalStack, SigningKey]]:
    """The local stack with a fresh key that signs its receipts and the ledger's tree heads (one
    key here; they may differ in production), and regulations that finish within a second."""
    key, private_pem = generate_signing_key("test-receipts")
    conn = json.dumps({"conn_type": "generic", "login": "test-receipts", "password": private_pem})
    with local_stack(
        root,
        sandbox_args=["--regulation-seconds", "1"],
        extra_env={"AIRFLOW_CONN_GDPR_RECEIPT_KEY": conn, "AIRFLOW_CONN_GDPR_LEDGER_KEY": conn},
    ) as stack:
        yield stack, key


@pytest.fixture(scope="session")
def finished_stack(tmp_path_factory) -> FinishedStack:
    root = tmp_path_factory.mktemp("e2e") / "stack"
    with signing_stack(root) as (stack, key):
        # Stripe cus_ ids are identifiers too (they link to charges that keep PII).
        identifiers = {
            key_: [
                stack.people[key_]["email"],
                stack.people[key_]["phone"],
                *stack.people[key_]["stripe_customer_ids"],
            ]
            for key_ in PEOPLE
        }
        stack.submit(list(PEOPLE))
        code = stack.run_dag("dag-run.log")
        store = stack.store()
        counts = store.counts_by_status()
        store.dispose()
    return FinishedStack(root, stack, identifiers, code, counts, key.public_pem())

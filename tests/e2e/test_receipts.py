"""Signed erasure receipts from a real run: issued by the CLI, verified offline, tamper-evident."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from e2e_support import forms

from gdpr_erasure.receipts import generate_signing_key


def cli(finished_stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gdpr_erasure.cli", *args],
        env=finished_stack.stack.env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def receipts(finished_stack, tmp_path_factory):
    out = tmp_path_factory.mktemp("receipts")
    issued = cli(finished_stack, "receipt", "issue", "--all", "--out-dir", str(out))
    assert issued.returncode == 0, issued.stderr
    public = out / "public.pem"
    public.write_text(cli(finished_stack, "receipt", "public-key").stdout)
    assert public.read_text() == finished_stack.public_pem
    return out, public


def test_a_receipt_per_completed_request_verifies_offline(finished_stack, receipts):
    out, public = receipts
    files = sorted(out.glob("*.receipt.json"))
    assert len(files) == finished_stack.counts["completed"]
    for path in files:
        checked = cli(finished_stack, "receipt", "verify", str(path), "--public-key", str(public))
        assert checked.returncode == 0, checked.stderr
        assert "valid receipt" in checked.stdout


def test_the_receipt_says_what_was_erased_where_with_evidence(receipts):
    out, _ = receipts
    content = json.loads((out / "req-multi_stripe.receipt.json").read_text())["receipt"]
    stripe = content["erased"]["stripe"]
    assert len(stripe["customers"]) == 2
    assert all(
        c["outcome"] == "deleted" and c["deleted_evidence"]["state"] == "deleted"
        for c in stripe["customers"].values()
    )
    assert content["erased"]["segment"]["status"] == "FINISHED"
    assert content["erased"]["twilio"]["history_deleted"]["messages"] > 0
    assert content["audit"]["seq"] >= 1
    assert len(content["audit"]["record_hash"]) == 64


def test_any_changed_byte_fails_verification(finished_stack, receipts, tmp_path):
    out, public = receipts
    original = (out / "req-person-002.receipt.json").read_text()
    for old, new in (('"FINISHED"', '"FINISHEd"'), ('"req-person-002"', '"req-person-003"')):
        assert old in original
        tampered = tmp_path / "tampered.json"
        tampered.write_text(original.replace(old, new, 1))
        checked = cli(finished_stack, "receipt", "verify", str(tampered), "--public-key", str(public))
        assert checked.returncode == 1
        assert "INVALID" in checked.stderr


def test_a_receipt_from_another_key_is_rejected(finished_stack, receipts, tmp_path):
    out, _ = receipts
    other, _ = generate_signing_key("someone-else")
    (tmp_path / "other.pem").write_text(other.public_pem())
    checked = cli(
        finished_stack,
        "receipt",
        "verify",
        str(out / "req-person-002.receipt.json"),
        "--public-key",
        str(tmp_path / "other.pem"),
    )
    assert checked.returncode == 1


def test_receipts_hold_no_raw_identifier(finished_stack, receipts):
    out, _ = receipts
    text = "".join(p.read_text() for p in out.glob("*.receipt.json"))
    for values in finished_stack.identifiers.values():
        for value in values:
            assert not [f for f in forms(value) if f in text]

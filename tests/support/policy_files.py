"""Policy files for the tests: the shipped default, and edits of it that break one rule."""

from __future__ import annotations

from pathlib import Path

from gdpr_erasure.policy import DEFAULT_POLICY_PATH

DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")


def edited(old: str, new: str, text: str = DEFAULT_TEXT) -> str:
    """``text`` with its one occurrence of ``old`` replaced (fails loudly if the default changed)."""
    assert text.count(old) == 1, f"{old!r} is not in the default policy exactly once"
    return text.replace(old, new)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line holding ``needle``."""
    found = [number for number, line in enumerate(text.splitlines(), start=1) if needle in line]
    return found[occurrence - 1]


def write(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# A policy that uses every action somewhere: the company keeps its Stripe customers for a
# contract's term, cancels subscriptions, redacts open invoices, withholds a customer with a
# balance and has a person look at every dispute. (Only the Stripe customer can be kept in this
# release: the Twilio and Segment kinds take erase only.)
EVERY_ACTION = """\
version: 1
objects:
  stripe.customer:
    action: retain
    legal_basis: |
      Art. 17(3)(b) GDPR: customer records
      kept for the regulator
    retain_for: P3Y
  twilio.memory_profile:
    action: erase
  twilio.communication_history:
    action: erase
  segment.profile:
    action: erase
live_state:
  active_subscription:
    action: cancel_then_erase
  open_invoice:
    action: redact
    legal_basis: Art. 17(3)(b) GDPR
    retain_for: P6Y
  open_dispute:
    action: hold_for_review
    note: The support team checks open tickets first.
  customer_balance:
    action: withhold
    legal_basis: Art. 17(3)(b) GDPR
    review_after: P30D
"""


def legal_basis_block(case: str) -> str:
    """The ``legal_basis: >-`` lines (the key and its folded text) of a live-state case in the default."""
    lines = DEFAULT_TEXT.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line == f"  {case}:\n")
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("    legal_basis:"))
    end = first + 1
    while lines[end].startswith("      "):
        end += 1
    return "".join(lines[first:end])

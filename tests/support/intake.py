"""What the intake fixtures configure, for the tests that check it comes back."""

from __future__ import annotations

# The controller id in the ``gdpr_intake`` connection's extra (the ``intake_connection`` fixture);
# OpenDSR answers carry it.
CONTROLLER_ID = "acme-test"

"""Identifier formats of the emulated services, drawn from one seeded random generator.

Every id is generated from the state's ``random.Random`` so that the same seed (and the same
sequence of requests) yields the same ids: runs are reproducible.
"""

from __future__ import annotations

import random
import string

_BASE62 = string.digits + string.ascii_letters
_HEX = "0123456789abcdef"
_TTID_TAIL = string.digits + string.ascii_lowercase

# Fixed account-level identifiers. They are constants (not seeded) so that hook configuration
# and documentation can name them. Each matches the real format of its service.
TWILIO_ACCOUNT_SID = "AC" + "5a4db0c5" * 4
MEMORY_STORE_ID = "mem_store_01sandboxstore000000000000"
SEGMENT_SPACE_ID = "spa_sandbox"
SEGMENT_WORKSPACE_ID = "wks_sandbox"
SEGMENT_SOURCE_ID = "src_sandbox"
# A test profile (not a data subject) carrying an email and a phone: the preflight reads it to
# prove the space's external id types (connection extra check_user_id).
SEGMENT_CHECK_USER_ID = "gdpr-erasure-check"
TWILIO_CHAT_SERVICE_SID = "IS" + "5a4db0c5" * 4  # the account's default Conversation Service
# A second Conversation Service (for example a support app's): its conversations are not reachable
# through the default-service paths (/v1/Conversations, /v1/ParticipantConversations).
TWILIO_SUPPORT_CHAT_SERVICE_SID = "IS" + "c0ffee55" * 4
TWILIO_MESSAGING_SERVICE_SID = "MG" + "5a4db0c5" * 4
# The Stripe account of every sandbox key (GET /v1/account: connection extra account_id), and
# another account: keys starting sk_test_other_ or rk_test_other_ belong to it and see none of the
# sandbox's customers, like another project's key (docs/no-silent-success.md).
STRIPE_ACCOUNT_ID = "acct_1Sandbox00000001"
STRIPE_OTHER_ACCOUNT_ID = "acct_1OtherAcct000002"


class IdFactory:
    """Makes ids in the shapes the real services use (prefixes, lengths, alphabets)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def _chars(self, alphabet: str, length: int) -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(length))

    def stripe(self, prefix: str) -> str:
        """A Stripe object id such as ``cus_QXg1o8vcGmoR32`` (prefix + 14 base62 chars)."""
        return f"{prefix}_{self._chars(_BASE62, 14)}"

    def twilio_sid(self, prefix: str) -> str:
        """A Twilio SID: two-letter prefix + 32 hex digits (``SM...``, ``CA...``)."""
        return prefix + self._chars(_HEX, 32)

    def ttid(self, prefix: str) -> str:
        """A Twilio Type ID as used by the Memory API: ``mem_profile_`` + ``[0-7][0-9a-z]{25}``."""
        return f"{prefix}_{self._rng.choice('01234567')}{self._chars(_TTID_TAIL, 25)}"

    def ksuid(self) -> str:
        """A 27-character base62 id like Segment's regulate ids (``1qJkfE1tpwvQcklImGksLN629wn``)."""
        return self._chars(_BASE62, 27)

    def hex(self, length: int) -> str:
        """Lower-case hex digits (used for opaque user ids and anonymous ids)."""
        return self._chars(_HEX, length)

    def uuid(self) -> str:
        """A random (version 4 shaped) UUID string."""
        raw = self._chars(_HEX, 32)
        return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:]}"

    def request_id(self) -> str:
        """A Stripe style request id (``req_...``)."""
        return self.stripe("req")

"""The signature scheme on its own: known answer, header parsing, tolerance, rotation, and that
digests are compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gdpr_erasure.intake import signature
from gdpr_erasure.intake.signature import (
    SignatureError,
    compute_signature,
    parse_header,
    signature_header,
    signed_content,
    verify,
)

KEY = b"k" * 32
BODY = b'{"request_id":"r1","email":"jane@example.com"}'
T = 1_767_225_600


def test_known_answer_matches_a_plain_hmac_of_t_dot_body():
    expected = hmac.new(KEY, b"1767225600." + BODY, hashlib.sha256).hexdigest()

    assert compute_signature(KEY, T, BODY) == expected
    assert signature_header(KEY, BODY, T) == f"t={T},v1={expected}"


def test_get_content_is_method_and_path_and_post_content_is_the_body():
    assert signed_content("GET", "/v1/requests/r1", b"ignored") == b"GET /v1/requests/r1"
    assert signed_content("POST", "/v1/requests", BODY) == BODY


def test_verify_accepts_a_fresh_signature_and_returns_its_timestamp():
    assert verify(signature_header(KEY, BODY, T), BODY, [KEY], now=T + 299) == T


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_verify_refuses_timestamps_outside_the_tolerance_either_way(skew):
    with pytest.raises(SignatureError) as err:
        verify(signature_header(KEY, BODY, T), BODY, [KEY], now=T + skew)
    assert err.value.code == "timestamp_outside_tolerance"


def test_tolerance_is_configurable():
    header = signature_header(KEY, BODY, T)
    assert verify(header, BODY, [KEY], tolerance=10, now=T + 10) == T
    with pytest.raises(SignatureError):
        verify(header, BODY, [KEY], tolerance=10, now=T + 11)


def test_any_v1_matching_any_active_secret_is_enough():
    old, new = b"o" * 32, b"n" * 32
    both = signature_header([old, new], BODY, T)

    assert verify(signature_header(old, BODY, T), BODY, [new, old], now=T) == T
    assert verify(both, BODY, [new], now=T) == T
    with pytest.raises(SignatureError) as err:
        verify(signature_header(old, BODY, T), BODY, [new], now=T)
    assert err.value.code == "invalid_signature"


def test_unknown_schemes_are_ignored_and_order_does_not_matter():
    sig = compute_signature(KEY, T, BODY)
    assert verify(f"v0=deadbeef, v1={sig.upper()} ,t={T}", BODY, [KEY], now=T) == T


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_signature"),
        ("   ", "missing_signature"),
        ("t=1", "malformed_signature"),
        (f"v1={'a' * 64}", "malformed_signature"),
        (f"t=1,t=2,v1={'a' * 64}", "malformed_signature"),
        (f"t=-5,v1={'a' * 64}", "malformed_signature"),
        ("t=\uff11\uff12\uff13,v1=" + "a" * 64, "malformed_signature"),  # fullwidth digits
        (f"t=1,v1={'a' * 63}", "malformed_signature"),
        (f"t=1,v1={'g' * 64}", "malformed_signature"),
        ("t=1,v1", "malformed_signature"),
        ("t=1," + ",".join([f"v1={'a' * 64}"] * 9), "malformed_signature"),
        ("t=1,v1=" + "a" * 2000, "malformed_signature"),
    ],
)
def test_malformed_headers(header, code):
    with pytest.raises(SignatureError) as err:
        parse_header(header)
    assert err.value.code == code


def test_digests_are_compared_in_constant_time_for_every_pair(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signature.hmac, "compare_digest", spy)
    header = signature_header([b"x" * 32, KEY], BODY, T)

    verify(header, BODY, [KEY, b"y" * 32, b"z" * 32], now=T)

    # No early exit: all 3 secrets x 2 signatures are compared, even though the first matched.
    assert len(calls) == 6


def test_a_refusal_carries_no_body_and_any_bytes_are_only_a_bad_signature():
    """Why this is not stripe-python's verify_header: its error holds the body, and it decodes
    the body as UTF-8 before checking anything."""
    with pytest.raises(SignatureError) as err:
        verify(signature_header(b"w" * 32, BODY, T), BODY, [KEY], now=T)
    assert "jane" not in repr(vars(err.value)) + str(err.value)
    with pytest.raises(SignatureError) as err:
        verify(signature_header(b"w" * 32, b"\xff\xfe", T), b"\xff\xfe", [KEY], now=T)
    assert err.value.code == "invalid_signature"

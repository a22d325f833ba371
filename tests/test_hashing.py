"""The identifier hash key comes only from a connection's password; Stripe customer tags."""

from __future__ import annotations

import json

import pytest

from gdpr_erasure.hashing import (
    STRIPE_TAG_PREFIX,
    TAG_LENGTH,
    HashKey,
    MissingHashKey,
    keyed_hash,
    load_hash_key,
    stripe_tag,
    tag_of_hmac,
)

SECRET = "k" * 40


def connection(password: str, login: str | None = "k7") -> str:
    return json.dumps({"conn_type": "generic", "login": login, "password": password})


@pytest.fixture
def no_key(monkeypatch):
    for name in ("AIRFLOW_CONN_GDPR_HASH_KEY", "AIRFLOW_VAR_GDPR_HASH_KEY", "GDPR_HASH_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_key_is_the_connection_password_and_its_login_the_key_id(no_key):
    no_key.setenv("AIRFLOW_CONN_GDPR_HASH_KEY", connection(SECRET))
    key = load_hash_key()
    assert key == HashKey(key_id="k7", secret=SECRET.encode())
    assert SECRET not in repr(key)


def test_a_connection_without_login_has_key_id_default(no_key):
    no_key.setenv("AIRFLOW_CONN_GDPR_HASH_KEY", connection(SECRET, login=None))
    assert load_hash_key().key_id == "default"


def test_the_variable_is_refused_with_what_to_do(no_key):
    """Airflow's REST API returns a variable's value in clear: the key must not live there."""
    no_key.setenv("AIRFLOW_VAR_GDPR_HASH_KEY", SECRET)
    with pytest.raises(MissingHashKey) as raised:
        load_hash_key()
    message = str(raised.value)
    assert "\n" not in message
    assert "move it into the password of the connection 'gdpr_hash_key'" in message
    assert "delete the variable" in message
    assert SECRET not in message


def test_the_connection_wins_over_a_leftover_variable(no_key):
    no_key.setenv("AIRFLOW_VAR_GDPR_HASH_KEY", "v" * 40)
    no_key.setenv("AIRFLOW_CONN_GDPR_HASH_KEY", connection(SECRET))
    assert load_hash_key().secret == SECRET.encode()


def test_the_plain_env_var_is_no_longer_a_source(no_key):
    no_key.setenv("GDPR_HASH_KEY", SECRET)
    with pytest.raises(MissingHashKey, match="AIRFLOW_CONN_GDPR_HASH_KEY"):
        load_hash_key()


def test_a_short_key_is_refused(no_key):
    no_key.setenv("AIRFLOW_CONN_GDPR_HASH_KEY", connection("short"))
    with pytest.raises(MissingHashKey, match="at least 32"):
        load_hash_key()


def test_stripe_tag_is_a_prefix_of_the_keyed_hash_and_idempotent():
    key = HashKey("k1", SECRET.encode())
    tag = stripe_tag(key, "cus_NffrFeUfNV2Hib")
    full = keyed_hash(key, "cus_NffrFeUfNV2Hib")
    assert tag == STRIPE_TAG_PREFIX + full[:TAG_LENGTH] == tag_of_hmac(full)
    assert len(tag) == len("cus#") + 12
    assert stripe_tag(key, tag) == tag  # tagging twice changes nothing
    assert stripe_tag(HashKey("k2", b"x" * 40), "cus_NffrFeUfNV2Hib") != tag  # needs the key


def test_operators_holding_a_stripe_tagger_can_be_copied():
    """Airflow deep-copies operators; the tagger's lock must not stop it, nor the key travel."""
    import copy
    import pickle

    from gdpr_erasure.hashing import StripeTagger
    from gdpr_erasure.operators.stripe import StripeCustomerErasureOperator
    from gdpr_erasure.sensors.stripe import StripeCustomerDeletedSensor

    for operator in (
        StripeCustomerErasureOperator(task_id="redact", request_ids=["r1"]),
        StripeCustomerDeletedSensor(task_id="verify", request_ids=["r1"]),
    ):
        copied = copy.deepcopy(operator)
        assert isinstance(copied._tag, StripeTagger) and copied._tag is not operator._tag
    tagger = StripeTagger()
    tagger._key = "secret"
    assert pickle.loads(pickle.dumps(tagger))._key is None

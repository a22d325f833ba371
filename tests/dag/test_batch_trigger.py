"""The one proof trigger against the sandbox and a real compliance store: it carries request ids
only, reads what to poll from the store, and settles each request of a batch on its own (done,
failed, pending at the deadline, error)."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import time

import pytest
from airflow.sdk.exceptions import TaskDeferred

from gdpr_erasure import steps
from gdpr_erasure.hashing import load_hash_key, stripe_tag
from gdpr_erasure.hooks.segment import SegmentHook
from gdpr_erasure.hooks.stripe import StripeHook
from gdpr_erasure.hooks.twilio import TwilioHook
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.sensors.stripe import StripeCustomerDeletedSensor
from gdpr_erasure.store import ComplianceStore, StepStatus
from gdpr_erasure.triggers.proof import DeletionProofTrigger


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh compliance store where the sensors and the trigger look for it."""
    url = f"sqlite:///{tmp_path / 'compliance.db'}"
    monkeypatch.setenv("GDPR_COMPLIANCE_DB_URL", url)
    store = ComplianceStore.from_url(url)
    store.init_db()
    yield store
    store.dispose()


def erased(store, request_id: str, step: str, result: dict, identifiers=None) -> str:
    """A request whose erasure ``step`` stored ``result``."""
    store.submit(request_id, identifiers or SubjectIdentifiers.parse(user_id=request_id), source="test")
    store.record_step(request_id, step, StepStatus.DONE, result)
    return request_id


def stripe_erasure(*customer_ids: str) -> steps.StripeErasure:
    return steps.StripeErasure(
        method="delete",
        deletion_ts=1_800_000_000,
        customers={c: steps.StripeCustomerRecord(outcome="deleted") for c in customer_ids},
    )


def first_event(*triggers: DeletionProofTrigger) -> list[dict]:
    """Run the triggers in one event loop, as the triggerer does; each one's first event."""

    async def first(trigger):
        async for event in trigger.run():
            return event.payload

    async def together():
        return await asyncio.gather(*(first(t) for t in triggers))

    return asyncio.run(together())


def tag(customer_id: str) -> str:
    return stripe_tag(load_hash_key(), customer_id)


# -- what it carries -------------------------------------------------------------------------


def test_it_serializes_to_an_importable_class_and_json_and_round_trips():
    trigger = DeletionProofTrigger(
        ["req-1", "req-2"],
        steps.STRIPE,
        "stripe_x",
        poll_interval=5,
        deadline=1_900_000_000.0,
        max_concurrency=4,
        compliance_conn_id="compliance_x",
    )
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    assert not module.startswith("dags")  # the triggerer must import it from the package
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON: no objects for serde to encode
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_a_step_without_a_check_is_refused():
    with pytest.raises(ValueError, match="no proof check"):
        DeletionProofTrigger(["req-1"], steps.TWILIO_HISTORY, "twilio_default", poll_interval=1)


def test_the_deferred_trigger_holds_no_customer_id_email_or_phone(store, sandbox, api_connections):
    """Trigger kwargs sit in Airflow's metadata DB while they wait: the sensor defers with request
    ids only, and the trigger finds the customers in the compliance store."""
    person = sandbox.person("multi_stripe")
    customer_ids = person["stripe_customer_ids"]
    assert len(customer_ids) == 2
    given = SubjectIdentifiers.parse(
        email=person["email"], phone=person["phone"], stripe_customer_id=customer_ids[0]
    )
    rid = erased(store, "req-multi", steps.STRIPE, stripe_erasure(*customer_ids), given)
    sensor = StripeCustomerDeletedSensor(
        task_id="verify_stripe", request_ids=[rid], poll_interval=0.1, deferrable=True, timeout=10
    )

    with pytest.raises(TaskDeferred) as deferred:  # the customers are live: it has to wait
        sensor.execute({"params": {}})

    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    text = json.dumps([classpath, kwargs])
    assert "cus_" not in text
    for identifier in (person["email"], person["phone"], person["phone"].lstrip("+"), *customer_ids):
        assert identifier not in text
    assert kwargs["request_ids"] == [rid] and kwargs["erasure_step"] == steps.STRIPE

    # The trigger rebuilt from those kwargs reads the customers from the store, and its event
    # (stored in the metadata DB too) names them by tag.
    rebuilt = DeletionProofTrigger(**{**kwargs, "deadline": time.time() + 0.3})
    (event,) = first_event(rebuilt)
    assert event["outcomes"][rid]["state"] == "pending"
    assert event["outcomes"][rid]["evidence"]["summary"] == f"{tag(min(customer_ids))} still exists"
    assert "cus_" not in json.dumps(event)


# -- how it settles ------------------------------------------------------------------------


def test_each_request_settles_on_its_own_and_the_slow_ones_are_pending_at_the_deadline(
    store, sandbox, api_connections
):
    gone, live = (
        p["stripe_customer_ids"][0] for p in (sandbox.person("person-002"), sandbox.person("no_segment"))
    )
    assert StripeHook().delete_customer(gone) == "deleted"
    running = SegmentHook().create_regulation([sandbox.person("person-002")["segment_user_id"]])
    stripe_ids = [
        erased(store, "req-gone", steps.STRIPE, stripe_erasure(gone)),
        erased(store, "req-live", steps.STRIPE, stripe_erasure(live)),
        erased(store, "req-unknown-customer", steps.STRIPE, stripe_erasure("cus_NoSuchCustomer01")),
        "req-nothing-stored",  # no erasure result in the store: nothing to prove is no proof
    ]
    store.submit("req-nothing-stored", SubjectIdentifiers.parse(user_id="x"), source="test")
    segment_ids = [
        erased(store, "req-bad-regulation", steps.SEGMENT, {"regulation_id": "no-such-regulation"}),
        erased(store, "req-slow", steps.SEGMENT, {"regulation_id": running}),
    ]
    deadline = time.time() + 0.5  # before the regulation finishes

    stripe_event, segment_event = first_event(
        DeletionProofTrigger(
            stripe_ids, steps.STRIPE, "stripe_default", poll_interval=0.2, deadline=deadline
        ),
        DeletionProofTrigger(
            segment_ids, steps.SEGMENT, "segment_default", poll_interval=0.2, deadline=deadline
        ),
    )

    assert stripe_event["status"] == segment_event["status"] == "settled"
    stripe = stripe_event["outcomes"]
    assert stripe["req-gone"]["state"] == "done"
    proof = stripe["req-gone"]["evidence"]["customers"][tag(gone)]
    assert (proof["state"], proof["evidence"]) == ("deleted", "deleted_stub")
    # The trigger proves customers this pipeline deleted: a 404 for one is proof, named as such.
    proof = stripe["req-unknown-customer"]["evidence"]["customers"][tag("cus_NoSuchCustomer01")]
    assert (proof["state"], proof["evidence"]) == ("deleted", "not_found")
    assert stripe["req-live"] == {"state": "pending", "evidence": {"summary": f"{tag(live)} still exists"}}
    assert stripe["req-nothing-stored"]["state"] == "error"
    assert "no erase_stripe result" in stripe["req-nothing-stored"]["evidence"]["reason"]
    segment = segment_event["outcomes"]
    assert segment["req-bad-regulation"]["state"] == "failed"
    assert "not found" in segment["req-bad-regulation"]["evidence"]["reason"]
    assert segment["req-slow"]["state"] == "pending"
    assert segment["req-slow"]["evidence"]["regulation_id"] == running


def test_without_a_deadline_it_waits_until_each_request_is_proven_or_failed(store, sandbox, api_connections):
    finishing = SegmentHook().create_regulation([sandbox.person("person-002")["segment_user_id"]])
    failing = SegmentHook().create_regulation([sandbox.person("segment_failed")["segment_user_id"]])
    profile_id = sandbox.person("person-002")["memory_profile_id"]
    assert TwilioHook().delete_memory_profile(profile_id) == "deleted"
    segment_ids = [
        erased(store, "req-slow", steps.SEGMENT, {"regulation_id": finishing}),
        erased(store, "req-failing", steps.SEGMENT, {"regulation_id": failing}),
    ]
    twilio_ids = [erased(store, "req-memory", steps.TWILIO_PROFILE, {"profile_ids": [profile_id]})]

    segment_event, twilio_event = first_event(
        DeletionProofTrigger(segment_ids, steps.SEGMENT, "segment_default", poll_interval=0.5),
        DeletionProofTrigger(twilio_ids, steps.TWILIO_PROFILE, "twilio_default", poll_interval=0.2),
    )

    segment = segment_event["outcomes"]
    assert segment["req-slow"]["state"] == "done"
    assert segment["req-slow"]["evidence"]["status"] == "FINISHED"
    assert segment_event["polls"] > 1  # it did wait
    assert segment["req-failing"]["state"] == "failed"
    assert f"regulation {failing} is FAILED" in segment["req-failing"]["evidence"]["reason"]
    memory = twilio_event["outcomes"]["req-memory"]
    assert memory["state"] == "done" and memory["evidence"]["profiles"] == [profile_id]


def test_an_unreadable_store_is_an_error_event_and_creates_nothing(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("GDPR_COMPLIANCE_DB_URL", f"sqlite:///{missing}")

    (event,) = first_event(
        DeletionProofTrigger(["req-1"], steps.SEGMENT, "segment_default", poll_interval=0.1)
    )

    assert event["status"] == "error"
    assert "cannot read the compliance store (StoreMissing)" in event["message"]
    assert not missing.exists()


# -- what it logs ----------------------------------------------------------------------------


def messages(console: str) -> list[str]:
    """The messages of the task SDK's console log lines (``TIME [level] MESSAGE [logger] loc=...``)."""
    found = re.findall(r"^\S+ \[\w+\s*\] (.*?) \[[\w.]+\] loc=\S+$", console, re.M)
    return [message.rstrip() for message in found]


def groups(lines: list[str]) -> dict[str, list[str]]:
    """Each log group's title and its lines (Airflow's ``::group::`` / ``::endgroup::``)."""
    found: dict[str, list[str]] = {}
    title = None
    for line in lines:
        if line.startswith("::group::"):
            title = line.removeprefix("::group::")
            found[title] = []
        elif line == "::endgroup::":
            title = None
        elif title is not None:
            found[title].append(line)
    return found


def test_the_sensor_and_the_trigger_log_each_request_in_a_group_of_its_own(
    store, sandbox, api_connections, capsys
):
    """Lines marked with the request id as they happen, a group per request once it stands, the
    trigger's group when it settles one; customers by tag, never by id, email or phone."""
    people = {key: sandbox.person(key) for key in ("person-002", "no_segment")}
    gone, live = (people[key]["stripe_customer_ids"][0] for key in people)
    assert StripeHook().delete_customer(gone) == "deleted"
    given = {
        key: SubjectIdentifiers.parse(
            email=p["email"], phone=p["phone"], stripe_customer_id=p["stripe_customer_ids"][0]
        )
        for key, p in people.items()
    }
    erased(store, "req-gone", steps.STRIPE, stripe_erasure(gone), given["person-002"])
    erased(store, "req-live", steps.STRIPE, stripe_erasure(live), given["no_segment"])
    sensor = StripeCustomerDeletedSensor(
        task_id="verify_stripe", request_ids=["req-gone", "req-live"], poll_interval=0.1, deferrable=True
    )

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"params": {}})
    trigger = DeletionProofTrigger(**{**deferred.value.trigger.serialize()[1], "deadline": time.time() + 0.3})
    (event,) = first_event(trigger)
    sensor.execute_complete({"params": {}}, event)

    console = capsys.readouterr().out
    lines = messages(console)
    found = groups(lines)
    waiting = f"not proven yet ({tag(live)} still exists)"
    # As they happen, marked with the request's id...
    assert any(line.startswith(f"[req-gone] proven: {{'customers': {{'{tag(gone)}'") for line in lines)
    assert f"[req-live] {waiting}; waiting" in lines
    assert f"[req-live] {waiting}: checking every 0.1s" in lines  # the trigger, once
    # ...and together once the request stands: the sensor's first check, the trigger, the sensor resumed.
    assert found["verify_stripe: req-gone (done)"][0].startswith(f"proven: {{'customers': {{'{tag(gone)}'")
    assert found["verify_stripe: req-live (waiting)"] == [f"{waiting}; waiting"]
    (settled,) = found["proof of erase_stripe: req-live (pending)"]
    assert settled.startswith("[req-live] still not proven at the deadline, after ")
    # No patience set on this sensor: the line names none (it once read "after Nones").
    assert found["verify_stripe: req-live (pending)"][0] == f"{waiting}: a later run checks again"
    assert set(found) == {  # the first checks run in threads: their two groups in either order
        "verify_stripe: req-live (waiting)",
        "verify_stripe: req-gone (done)",
        "proof of erase_stripe: req-live (pending)",
        "verify_stripe: req-live (pending)",
    }
    assert "cus_" not in console
    for ids in given.values():
        for identifier in (ids.email, ids.phone, ids.phone.lstrip("+")):
            assert identifier not in console

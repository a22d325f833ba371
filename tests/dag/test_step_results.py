"""Every step result a run stores matches its type in ``gdpr_erasure.steps``: no key that is not
declared there, every required key present, values of the declared types. A step that starts
writing a new key fails here until the key is declared (and the readers see it)."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

from gdpr_erasure import steps
from gdpr_erasure.store import RequestStatus

PEOPLE = ("person-002", "multi_stripe", "no_segment", "no_stripe", "quiet_phone", "segment_failed")


def mismatches(value: Any, hint: Any, where: str) -> list[str]:
    """Where ``value`` (read from JSON) does not match the type ``hint``."""
    origin = get_origin(hint)
    if hint is Any:
        return []
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        fields = get_type_hints(hint)
        found = [f"{where}.{key}: not declared in {hint.__name__}" for key in value if key not in fields]
        found += [f"{where}.{key}: missing" for key in hint.__required_keys__ if key not in value]
        for key, item in value.items():
            if key in fields:
                found += mismatches(item, fields[key], f"{where}.{key}")
        return found
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        _, item_type = get_args(hint)  # keys are strings in JSON
        return [m for key, item in value.items() for m in mismatches(item, item_type, f"{where}[{key!r}]")]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        (item_type,) = get_args(hint) or (Any,)
        return [m for i, item in enumerate(value) for m in mismatches(item, item_type, f"{where}[{i}]")]
    if origin is Literal:
        return [] if value in get_args(hint) else [f"{where}: {value!r} not one of {get_args(hint)}"]
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        return [] if any(not mismatches(value, o, where) for o in options) else [f"{where}: {value!r}"]
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if hint is float:
        return (
            [] if isinstance(value, int | float) and not isinstance(value, bool) else [f"{where}: {value!r}"]
        )
    if hint is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: {value!r}"]
    return [] if isinstance(value, hint) else [f"{where}: {value!r} is not {hint.__name__}"]


def test_every_step_has_a_result_type():
    names = {v for k, v in vars(steps).items() if k.isupper() and isinstance(v, str)}
    assert set(steps.RESULT_TYPES) == names
    assert (
        set(steps.ERASURE_STEPS) | {v for v in steps.ERASURE_STEPS.values() if v} | {steps.RESOLVE} == names
    )
    for kind in steps.RESULT_TYPES.values():
        assert is_typeddict(kind), kind


def test_result_as_reads_the_stored_dict_as_is():
    assert steps.result_as(steps.StripeErasure, None) == {}


def test_the_checker_sees_an_undeclared_key_a_missing_one_and_a_wrong_type():
    assert mismatches({"regulation_id": "r", "oops": 1}, steps.SegmentErasure, "s") == [
        "s.oops: not declared in SegmentErasure"
    ]
    assert mismatches({"memory_profile_ids": []}, steps.TwilioIds, "t") == ["t.has_phone: missing"]
    assert mismatches({"subjects": "2"}, steps.SegmentErasure, "s") == ["s.subjects: '2'"]
    customers = {"customers": {"cus#1": {"outcome": "gone"}}}
    assert mismatches(customers, steps.StripeErasure, "x")


def test_every_result_a_run_stores_matches_its_type(pipeline):
    ids = pipeline.submit(*PEOPLE)
    pipeline.run()

    statuses = {rid: pipeline.store.get(rid).status for rid in ids}
    assert statuses["req-person-002"] is RequestStatus.COMPLETED  # closed: ids replaced by tags
    assert statuses["req-segment_failed"] is not RequestStatus.COMPLETED  # open: as the steps left it
    seen: set[str] = set()
    for rid in ids:
        for name, result in pipeline.store.steps(rid).items():
            seen.add(name)
            assert mismatches(result.result, steps.RESULT_TYPES[name], f"{rid}/{name}") == []
    assert seen == set(steps.RESULT_TYPES)

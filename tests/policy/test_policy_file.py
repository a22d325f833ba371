"""The policy file: the shipped default, the schema's every rule (each rejected with its line and
what to write instead), where the policy is found, and its digest."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json

import jsonschema
import pytest
from support.policy_files import DEFAULT_TEXT, EVERY_ACTION, edited, legal_basis_block, line_of, write

from gdpr_erasure.policy import (
    ACTIONS,
    CASE_ACTIONS,
    DEFAULT_POLICY_PATH,
    ERASE_ONLY_KINDS,
    LIVE_STATE_CASES,
    OBJECT_ACTIONS,
    OBJECT_KINDS,
    POLICY_ENV,
    ErasurePolicy,
    PolicyError,
    Rule,
    load_policy,
    policy_location,
    policy_schema,
)


def test_the_shipped_default_erases_every_object_and_keeps_only_what_live_state_requires():
    policy = load_policy()
    assert policy.version == 1
    assert policy.source == str(DEFAULT_POLICY_PATH)
    assert {kind: rule.action for kind, rule in policy.objects.items()} == dict.fromkeys(
        OBJECT_KINDS, "erase"
    )
    live = policy.live_state
    assert (live["active_subscription"].action, live["active_subscription"].review_after) == (
        "withhold",
        "P30D",
    )
    assert (live["open_invoice"].action, live["open_invoice"].retain_for) == ("redact", "P10Y")
    assert (live["open_dispute"].action, live["open_dispute"].review_after) == ("withhold", "P60D")
    assert (live["customer_balance"].action, live["customer_balance"].review_after) == ("withhold", "P30D")
    # Each kept object names its legal basis in GDPR terms, on one line.
    assert live["active_subscription"].legal_basis.startswith("Art. 6(1)(b) GDPR")
    assert live["open_invoice"].legal_basis.startswith("Art. 17(3)(b) GDPR")
    assert live["open_dispute"].legal_basis.startswith("Art. 17(3)(e) GDPR")
    assert all("\n" not in (rule.legal_basis or "") for _, rule in policy.rules())


def test_the_schema_is_draft_2020_12_and_names_exactly_the_kinds_cases_and_actions():
    schema = policy_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    objects, live_state = schema["properties"]["objects"], schema["properties"]["live_state"]
    assert objects["required"] == list(OBJECT_KINDS) == list(objects["properties"])
    assert live_state["required"] == list(LIVE_STATE_CASES) == list(live_state["properties"])
    for kind in OBJECT_KINDS:
        assert objects["properties"][kind]["properties"]["action"]["enum"] == list(OBJECT_ACTIONS[kind])
    for case in LIVE_STATE_CASES:
        assert live_state["properties"][case]["properties"]["action"]["enum"] == list(CASE_ACTIONS[case])


def test_a_policy_using_every_action_loads(tmp_path):
    policy = load_policy(write(tmp_path, EVERY_ACTION))
    assert policy.object_rule("stripe.customer") == Rule(
        action="retain",
        legal_basis="Art. 17(3)(b) GDPR: customer records kept for the regulator",  # one line
        retain_for="P3Y",
    )
    assert policy.live_state["open_dispute"].note == "The support team checks open tickets first."
    assert policy.live_state["active_subscription"].action == "cancel_then_erase"
    assert {rule.action for _, rule in policy.rules()} == set(ACTIONS)
    with pytest.raises(ValueError, match=r"no object kind 'stripe\.charge': the kinds are stripe\.customer"):
        policy.object_rule("stripe.charge")


def test_a_loaded_policy_cannot_change():
    policy = load_policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.version = 2
    with pytest.raises(TypeError):
        policy.live_state["open_dispute"] = Rule(action="erase")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.live_state["open_dispute"].action = "erase"
    assert isinstance(hash(policy), int)


def test_the_digest_is_the_sha256_of_the_file_bytes(tmp_path):
    first, again = load_policy(), load_policy(DEFAULT_POLICY_PATH)
    assert (
        first.digest
        == again.digest
        == f"sha256:{hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()}"
    )
    assert first == again
    # A copy elsewhere is the same policy; one changed byte (a comment) is another.
    assert load_policy(write(tmp_path, DEFAULT_TEXT)).digest == first.digest
    assert load_policy(write(tmp_path, DEFAULT_TEXT + "# reviewed\n", "b.yaml")).digest != first.digest


FIRST_TWILIO_PROFILE_LINE = line_of(DEFAULT_TEXT, "twilio.memory_profile:")

# (id, text replaced, by, the line that must be named (its text), what the message must say)
BROKEN = [
    (
        "action not allowed for the case",
        "    # Its evidence is needed to answer it.\n    action: withhold",
        "    # Its evidence is needed to answer it.\n    action: erase  # was withhold",
        "# was withhold",
        "live_state.open_dispute.action: 'erase' is not an action for open_dispute: "
        "use one of withhold, hold_for_review",
    ),
    (
        "redact on a Twilio object",
        "  twilio.memory_profile:\n    action: erase",
        "  twilio.memory_profile:\n    action: redact",
        "action: redact",
        "objects.twilio.memory_profile.action: 'redact' is not an action for twilio.memory_profile: use one "
        "of erase",
    ),
    (
        "withhold without a legal basis",
        legal_basis_block("open_dispute"),
        "",
        "  open_dispute:",
        "live_state.open_dispute: withhold needs legal_basis: add `legal_basis: ",
    ),
    (
        "withhold without a review period",
        "    review_after: P60D\n",
        "",
        "  open_dispute:",
        "live_state.open_dispute: withhold needs review_after: add `review_after: P30D`",
    ),
    (
        "redact without a legal basis",
        legal_basis_block("open_invoice"),
        "",
        "  open_invoice:",
        "live_state.open_invoice: redact needs legal_basis",
    ),
    (
        "retain without a period",
        "    # below decide for one that has).\n    action: erase",
        "    # below decide for one that has).\n    action: retain\n    legal_basis: Art. 17(3)(b) GDPR",
        "  stripe.customer:",
        "objects.stripe.customer: retain needs retain_for: add `retain_for: P10Y`",
    ),
    (
        "a review period on a rule that is never reviewed",
        "    retain_for: P10Y\n",
        "    retain_for: P10Y\n    review_after: P1Y\n",
        "review_after: P1Y",
        "live_state.open_invoice.review_after: review_after does not apply to redact: remove it",
    ),
    (
        "a retention period on erase",
        "  twilio.communication_history:\n",
        "  twilio.communication_history:\n    retain_for: P1Y\n",
        "retain_for: P1Y",
        "objects.twilio.communication_history.retain_for: retain_for does not apply to erase: remove it",
    ),
    (
        "a duration in words",
        "review_after: P60D",
        "review_after: 60 days",
        "review_after: 60 days",
        "live_state.open_dispute.review_after: '60 days' is not an ISO 8601 duration: write an ISO 8601 "
        "duration of a day or more, e.g. P30D",
    ),
    (
        "a zero duration",
        "review_after: P60D",
        "review_after: P0D",
        "review_after: P0D",
        "'P0D' is not an ISO 8601 duration",
    ),
    (
        "a time duration",
        "retain_for: P10Y",
        "retain_for: PT12H",
        "retain_for: PT12H",
        "live_state.open_invoice.retain_for: 'PT12H' is not an ISO 8601 duration",
    ),
    (
        "a date instead of a duration",
        "review_after: P60D",
        "review_after: 2027-01-01",
        "review_after: 2027-01-01",
        "live_state.open_dispute.review_after: expected a duration, found 2027-01-01 (a date)",
    ),
    (
        "a blank legal basis",
        legal_basis_block("open_dispute"),
        "    legal_basis: ' '\n",
        "legal_basis: ' '",
        "live_state.open_dispute.legal_basis is blank: write the legal basis",
    ),
    (
        "an unknown key in a rule",
        "    review_after: P60D\n",
        "    review_after: P60D\n    review_afer: P1D\n",
        "review_afer",
        "live_state.open_dispute: unknown key 'review_afer' (did you mean review_after?): a rule has action, "
        "legal_basis, retain_for, review_after, note",
    ),
    (
        "a misspelt object kind",
        "  segment.profile:",
        "  segment.profiles:",
        "segment.profiles:",
        "objects: 'segment.profiles' is not an object kind (did you mean segment.profile?): the kinds are",
    ),
    (
        "a misspelt case",
        "  customer_balance:",
        "  customer_balanc:",
        "customer_balanc:",
        "live_state: 'customer_balanc' is not a live-state case (did you mean customer_balance?)",
    ),
    (
        "a case left out",
        "  active_subscription:\n",
        "  active_subscription_unused:\n",
        "active_subscription_unused:",
        "is not a live-state case",
    ),
    (
        "an object kind left out",
        "  twilio.memory_profile:\n    action: erase\n",
        "",
        "objects:",
        "objects: twilio.memory_profile has no rule: add `twilio.memory_profile:` with `action: erase`",
    ),
    (
        "a rule without an action",
        "  twilio.memory_profile:\n    action: erase\n",
        "  twilio.memory_profile:\n    note: to do\n",
        "  twilio.memory_profile:",
        "objects.twilio.memory_profile: the rule has no action: add `action:` with one of erase",
    ),
    (
        "a rule written as a word",
        "  twilio.memory_profile:\n    action: erase\n",
        "  twilio.memory_profile: erase\n",
        "twilio.memory_profile: erase",
        "objects.twilio.memory_profile: a rule is a mapping, not the text 'erase': write `action: erase`",
    ),
    (
        "another format version",
        "version: 1",
        "version: 2",
        "version: 2",
        "version: 2 is not a policy format this release reads: write `version: 1`",
    ),
    (
        "no version",
        "version: 1\n",
        "",
        "",  # line 1
        "the policy has no version: add `version: 1` at the top",
    ),
    (
        "an unknown top-level key",
        "version: 1\n",
        "version: 1\ndefaults: erase\n",
        "defaults: erase",
        "'defaults' is not a policy key: a policy has version, objects and live_state",
    ),
    (
        "a key written twice",
        "  segment.profile:",
        "  twilio.memory_profile:\n    action: retain\n  segment.profile:",
        "action: retain",
        f"'twilio.memory_profile' is written twice (first on line {FIRST_TWILIO_PROFILE_LINE}): keep one",
    ),
    (
        "bad indentation",
        "    review_after: P60D",
        "   review_after: P60D",
        "   review_after: P60D",
        "YAML syntax: while parsing a block mapping expected <block end>",
    ),
    (
        "a tab",
        "    review_after: P60D",
        "\treview_after: P60D",
        "\treview_after: P60D",
        "YAML syntax: while scanning for the next token found character '\\t' that cannot start any token: "
        "check the indentation (spaces, not tabs)",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "needle", "says"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_a_broken_rule_fails_the_whole_file_naming_its_line(tmp_path, old, new, needle, says):
    text = edited(old, new)
    if needle == "action: retain":  # the second twilio.memory_profile key is the line before
        line = line_of(text, "twilio.memory_profile:", occurrence=2)
    else:
        line = line_of(text, needle) if needle else 1
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: "), message
    assert says in message
    assert (raised.value.source, raised.value.line) == (str(path), line)


# Each object kind whose step does not apply the policy yet (only Stripe's does), with each way
# of keeping it, written in full (legal basis and period): refused, never validated and ignored.
NOT_KEPT_YET = [
    (kind, action, step)
    for kind, step in (
        ("twilio.memory_profile", "Twilio"),
        ("twilio.communication_history", "Twilio"),
        ("segment.profile", "Segment"),
    )
    for action in ("retain", "hold_for_review")
]


@pytest.mark.parametrize(
    ("kind", "action", "step"), NOT_KEPT_YET, ids=[f"{k} {a}" for k, a, _ in NOT_KEPT_YET]
)
def test_keeping_a_twilio_or_segment_object_is_refused_until_its_step_applies_the_policy(
    tmp_path, kind, action, step
):
    lines = DEFAULT_TEXT.splitlines(keepends=True)
    start = lines.index(f"  {kind}:\n")
    at = next(i for i in range(start, len(lines)) if lines[i] == "    action: erase\n")
    kept = f"    action: {action}\n"
    if action == "retain":
        kept += "    legal_basis: Art. 17(3)(b) GDPR\n    retain_for: P1Y\n"
    text = "".join([*lines[:at], kept, *lines[at + 1 :]])
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == (
        f"{path}:{at + 1}: objects.{kind}.action: keeping {kind} ({action}) is not supported yet: only "
        f"the Stripe step applies the policy, the {step} step erases it whatever this says; write "
        "`action: erase` (to keep one person's data, place a legal hold: gdpr-erasure hold place, "
        "docs/holds.md)"
    )


def test_only_the_stripe_customer_can_be_kept():
    for kind in OBJECT_KINDS:
        kept = set(OBJECT_ACTIONS[kind]) - {"erase"}
        assert bool(kept) == (kind == "stripe.customer"), kind
    assert set(ERASE_ONLY_KINDS) == set(OBJECT_KINDS) - {"stripe.customer"}


def test_one_error_is_named_and_the_others_counted(tmp_path):
    text = edited("review_after: P60D", "review_after: soon")
    text = edited("retain_for: P10Y", "retain_for: forever", text)
    with pytest.raises(PolicyError) as raised:
        load_policy(write(tmp_path, text))
    assert f":{line_of(text, 'forever')}: " in str(raised.value)  # the first in the file
    assert str(raised.value).endswith("(1 more problem after this one)")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", ":1: the policy is empty"),
        (b"# only comments\n", ":1: the policy is empty"),
        (b"- erase\n", ":1: the policy is a list: write a mapping of version, objects and live_state"),
        (b"version: 1\nobjects: \xff\n", ": not UTF-8 text: save the policy as UTF-8 YAML"),
        (b"version: !!python/object:os.system x\n", ":1: YAML syntax: could not determine a constructor"),
    ],
    ids=["empty", "comments only", "a list", "not UTF-8", "a Python tag"],
)
def test_what_is_not_a_policy_is_one_line_too(tmp_path, content, says):
    path = tmp_path / "policy.yaml"
    path.write_bytes(content)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value).startswith(str(path))
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_file_says_where_the_path_is_set(tmp_path):
    with pytest.raises(PolicyError) as raised:
        load_policy(tmp_path / "nowhere.yaml")
    assert str(raised.value) == (
        f"{tmp_path / 'nowhere.yaml'}: cannot read the policy (No such file or directory): give the path "
        "of a policy file (Variable gdpr_erasure_policy or $GDPR_ERASURE_POLICY; docs/policy.md)"
    )
    assert raised.value.line is None


def test_the_policy_is_found_in_the_variable_then_the_environment_then_the_package(tmp_path, monkeypatch):
    # The Variable is read as Airflow reads it outside a task: its AIRFLOW_VAR_ environment variable.
    monkeypatch.delenv("AIRFLOW_VAR_GDPR_ERASURE_POLICY", raising=False)
    monkeypatch.delenv(POLICY_ENV, raising=False)
    assert policy_location() == DEFAULT_POLICY_PATH
    monkeypatch.setenv(POLICY_ENV, str(tmp_path / "env.yaml"))
    assert policy_location() == tmp_path / "env.yaml"
    monkeypatch.setenv("AIRFLOW_VAR_GDPR_ERASURE_POLICY", f" {tmp_path / 'variable.yaml'}\n")
    assert policy_location() == tmp_path / "variable.yaml"
    monkeypatch.setenv("AIRFLOW_VAR_GDPR_ERASURE_POLICY", "")  # set but empty: not a path
    assert policy_location() == tmp_path / "env.yaml"


def test_as_dict_is_the_policy_as_written():
    shown = load_policy().as_dict()
    json.dumps(shown)
    assert shown["digest"].startswith("sha256:")
    assert shown["live_state"]["open_invoice"]["retain_for"] == "P10Y"
    assert shown["objects"]["stripe.customer"] == {"action": "erase"}
    assert isinstance(load_policy(), ErasurePolicy)


def test_the_policy_package_stands_on_its_own():
    """Operators, the CLI and the DAG file import it, so it imports no other part of the package,
    and Airflow only inside policy_location (the CLI reads a policy without starting Airflow)."""
    package = DEFAULT_POLICY_PATH.parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gdpr_erasure."):
                assert node.module.startswith("gdpr_erasure.policy"), f"{path.name} imports {node.module}"
        modules = [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
        modules += [alias.name for n in top_level if isinstance(n, ast.Import) for alias in n.names]
        assert not [m for m in modules if m.split(".")[0] == "airflow"], path.name

"""Find, read and validate the erasure policy file.

The whole file is checked against ``schema.json`` (JSON Schema 2020-12) before anything is built
from it, so a policy is either valid as a whole or not loaded at all. What is wrong is one line,
``FILE:LINE: what is wrong and what to write instead``, with the line of the YAML node at fault
(from the composed YAML's marks): the DAG's import error and ``gdpr-erasure policy check`` show it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from gdpr_erasure.policy.model import ErasurePolicy, Rule
from gdpr_erasure.policy.names import (
    CASE_ACTIONS,
    ERASE_ONLY_KINDS,
    HOLD_FOR_REVIEW,
    LIVE_STATE_CASES,
    OBJECT_ACTIONS,
    OBJECT_KINDS,
    REDACT,
    RETAIN,
    SEGMENT_PROFILE,
    WITHHOLD,
)

# Where the policy is: the Airflow Variable holding its path, else this environment variable,
# else the default shipped in the package.
POLICY_VARIABLE = "gdpr_erasure_policy"
POLICY_ENV = "GDPR_ERASURE_POLICY"
DEFAULT_POLICY_PATH = Path(__file__).with_name("default.yaml")
SCHEMA_PATH = Path(__file__).with_name("schema.json")

# What to write for a missing key, in the messages.
_EXAMPLES = {
    "action": "erase",
    "legal_basis": '"Art. 17(3)(b) GDPR: ..." (why it may be kept)',
    "retain_for": "P10Y",
    "review_after": "P30D",
}
_DURATION_HINT = "write an ISO 8601 duration of a day or more, e.g. P30D, P6M, P10Y or P1Y6M"
_YAML_HINT = "check the indentation (spaces, not tabs) and quote text holding ': ' or ' #'"
_JSON_TYPES = {
    "object": "a mapping",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "boolean": "true or false",
}


class PolicyError(ValueError):
    """A policy that cannot be used, as one line: ``FILE:LINE: what is wrong and what to write
    instead`` (``FILE: ...`` when no line is to blame, e.g. a file that cannot be read).

    :param source: the policy file.
    :param line: its 1-based line at fault, or None.
    :param problem: what is wrong and what to write instead.
    """

    def __init__(self, source: str | os.PathLike[str], line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = str(source), line, problem
        super().__init__(f"{source}:{line}: {problem}" if line else f"{source}: {problem}")


@functools.cache
def policy_schema() -> dict[str, Any]:
    """The policy's JSON Schema (draft 2020-12), shipped as ``schema.json`` next to this module."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(policy_schema())


def policy_location() -> Path:
    """Where the policy is: the path in the Airflow Variable ``gdpr_erasure_policy`` if set, else
    ``$GDPR_ERASURE_POLICY``, else the shipped default.

    Outside Airflow (the CLI with no Airflow database) the Variable is read from its
    ``AIRFLOW_VAR_GDPR_ERASURE_POLICY`` environment variable or a configured secrets backend
    only, and its absence falls through to the environment and the default. Inside a task or a
    DAG parse, a Variable that cannot be read raises: a policy silently swapped for the default
    would decide what to keep.
    """
    value = _variable_value() or os.environ.get(POLICY_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_POLICY_PATH


def _variable_value() -> str:
    try:
        from airflow.sdk import Variable
    except ImportError:  # pragma: no cover - Airflow is a dependency; the CLI may run without it
        return ""
    value = Variable.get(POLICY_VARIABLE, default=None)
    return str(value).strip() if value is not None else ""


def load_policy(path: str | os.PathLike[str] | None = None) -> ErasurePolicy:
    """Read and validate a policy file; the whole file or nothing.

    :param path: the policy file; None reads the shipped default (not :func:`policy_location`:
        call ``load_policy(policy_location())`` for the configured one).
    :raises PolicyError: the file cannot be read, is not YAML, or breaks a rule of the schema;
        the message names the line.
    """
    source = Path(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise PolicyError(
            source,
            None,
            f"cannot read the policy ({exc.strerror or exc}): give the path of a policy file "
            f"(Variable {POLICY_VARIABLE} or ${POLICY_ENV}; docs/policy.md)",
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(source, None, "not UTF-8 text: save the policy as UTF-8 YAML") from None

    root, data = _parse_yaml(source, text)
    if root is None or data is None:
        raise PolicyError(
            source, 1, "the policy is empty: start from the shipped default (gdpr-erasure policy show)"
        )
    errors = _first_causes(list(_validator().iter_errors(data)))
    if errors:
        located = sorted(
            (_describe(error, root) for error in errors), key=lambda found: (found[0] or 0, found[1])
        )
        line, problem = located[0]
        more = len({found for found in located}) - 1
        if more:
            problem += f" ({more} more problem{'s' if more > 1 else ''} after this one)"
        raise PolicyError(source, line, problem)

    def rule(spec: dict[str, Any]) -> Rule:
        return Rule(
            action=spec["action"],
            legal_basis=_clean(spec.get("legal_basis")),
            retain_for=spec.get("retain_for"),
            review_after=spec.get("review_after"),
            note=_clean(spec.get("note")),
        )

    return ErasurePolicy(
        version=int(data["version"]),
        objects={kind: rule(data["objects"][kind]) for kind in OBJECT_KINDS},
        live_state={case: rule(data["live_state"][case]) for case in LIVE_STATE_CASES},
        source=str(source),
        digest=f"sha256:{hashlib.sha256(raw).hexdigest()}",
    )


def _first_causes(errors: list[ValidationError]) -> list[ValidationError]:
    """Leave out the errors another one explains: what a wrong action would need (fix the
    action first), and a name missing from a map that has an unknown name (a misspelling)."""
    wrong_action = {
        tuple(e.absolute_path)[:-1]
        for e in errors
        if e.validator == "enum" and list(e.absolute_path)[-1:] == ["action"]
    }
    unknown_in = {tuple(e.absolute_path) for e in errors if e.validator == "additionalProperties"}
    return [
        e
        for e in errors
        if not ("then" in e.relative_schema_path and tuple(e.absolute_path) in wrong_action)
        and not (e.validator == "not" and tuple(e.absolute_path)[:-1] in wrong_action)
        and not (e.validator == "required" and tuple(e.absolute_path) in unknown_in)
    ]


def _clean(text: str | None) -> str | None:
    # Folded YAML (>-) keeps single spaces; a literal block's line breaks are joined too, so a
    # legal basis is one line wherever it is shown.
    return " ".join(text.split()) if text is not None else None


def _parse_yaml(source: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """The composed node tree (for line numbers) and the data built from that same tree."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _refuse_duplicate_keys(source, root)
        return root, loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part) or "not valid YAML"
        raise PolicyError(
            source,
            mark.line + 1 if mark else None,
            f"YAML syntax: {what}: {_YAML_HINT}",
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, None, f"YAML syntax: {exc}") from None
    finally:
        loader.dispose()


def _refuse_duplicate_keys(source: Path, root: yaml.Node) -> None:
    """YAML lets a later key silently replace an earlier one: in a policy that is a rule nobody
    sees, so a repeated key is an error."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first:
                        raise PolicyError(
                            source,
                            line,
                            f"{key.value!r} is written twice (first on line {first[key.value]}): keep one",
                        )
                    first[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _find(root: yaml.Node, path: list[Any]) -> tuple[yaml.Node | None, yaml.Node]:
    """The key node and the value node at ``path`` (as deep as the file goes)."""
    key_node: yaml.Node | None = None
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode):
            # The last match: after a merge (<<) the keys written in place come last and win.
            matches = [
                (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)
            ]
            if not matches:
                break
            key_node, node = matches[-1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            key_node, node = None, node.value[part]
        else:
            break
    return key_node, node


def _line(root: yaml.Node, path: list[Any]) -> int:
    key_node, node = _find(root, path)
    return (key_node or node).start_mark.line + 1


def _quote(value: Any) -> str:
    if not isinstance(value, str):
        return str(value)
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "nothing"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {_quote(value)}"
    return f"{_quote(value)} (a {type(value).__name__})"


def _actions_for(path: list[Any]) -> tuple[str, ...]:
    if len(path) >= 2 and path[0] == "objects":
        return OBJECT_ACTIONS.get(path[1], ())
    if len(path) >= 2 and path[0] == "live_state":
        return CASE_ACTIONS.get(path[1], ())
    return ()


def _close(word: Any, choices: list[str]) -> str:
    near = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {near[0]}?)" if near else ""


def _describe(error: ValidationError, root: yaml.Node) -> tuple[int, str]:
    """(line, message) for one schema error: what is wrong and what to write instead."""
    path = list(error.absolute_path)
    where = ".".join(str(part) for part in path)
    validator, instance = error.validator, error.instance
    if validator == "additionalProperties":
        return _unknown_key(error, root, path, where)
    if validator == "required":
        return _missing_key(error, root, path, where)

    line = _line(root, path)
    last = str(path[-1]) if path else ""
    if validator == "enum" and last == "action":
        allowed = list(error.validator_value)
        subject = path[1] if len(path) == 3 else "this rule"
        if path[0] == "objects" and subject in ERASE_ONLY_KINDS and instance in (RETAIN, HOLD_FOR_REVIEW):
            # A way of keeping it that this kind's step cannot apply yet: say so, not "unknown".
            step = "Segment" if subject == SEGMENT_PROFILE else "Twilio"
            return (
                line,
                f"{where}: keeping {subject} ({instance}) is not supported yet: only the Stripe step "
                f"applies the policy, the {step} step erases it whatever this says; write `action: erase` "
                "(to keep one person's data, place a legal hold: gdpr-erasure hold place, docs/holds.md)",
            )
        near = _close(instance, allowed)
        return (
            line,
            f"{where}: {_quote(instance)} is not an action for {subject}{near}: use one of {_list(allowed)}",
        )
    if validator == "const" and path == ["version"]:
        return (
            line,
            f"version: {_quote(instance)} is not a policy format this release reads: write `version: 1`",
        )
    if validator == "pattern" and last in ("retain_for", "review_after"):
        return line, f"{where}: {_quote(instance)} is not an ISO 8601 duration: {_DURATION_HINT}"
    if validator == "pattern" and last == "legal_basis":
        return line, f"{where} is blank: write the legal basis, e.g. {_EXAMPLES['legal_basis']}"
    if validator == "not":  # a key the rule's action does not take
        action = getattr(_find(root, [*path[:-1], "action"])[1], "value", "this action")
        why = {
            "review_after": f"only {WITHHOLD} is checked again",
            "retain_for": f"only {RETAIN} and {REDACT} keep something for a period",
        }.get(last)
        hint = f" ({why}; {HOLD_FOR_REVIEW} waits for a person)" if why else ""
        return line, f"{where}: {last} does not apply to {action}: remove it{hint}"
    if validator == "type":
        expected = error.validator_value
        wanted = _JSON_TYPES.get(expected, expected) if isinstance(expected, str) else "another type"
        found = _type_name(instance)
        if not path:
            return line, f"the policy is {found}: write a mapping of version, objects and live_state"
        if expected == "object" and len(path) == 2 and isinstance(instance, str):
            return (
                line,
                f"{where}: a rule is a mapping, not {found}: write `action: {instance}` indented below it",
            )
        if expected == "string" and last in ("retain_for", "review_after"):
            return line, f"{where}: expected a duration, found {found}: {_DURATION_HINT}"
        return line, f"{where}: expected {wanted}, found {found}"
    return line, f"{where or 'the policy'}: {error.message}"


def _unknown_key(error: ValidationError, root: yaml.Node, path: list[Any], where: str) -> tuple[int, str]:
    allowed = list(error.schema.get("properties", {}))
    key = next(k for k in error.instance if k not in allowed)
    line, near = _line(root, [*path, key]), _close(key, allowed)
    if path == ["objects"]:
        return line, f"objects: {_quote(key)} is not an object kind{near}: the kinds are {_list(allowed)}"
    if path == ["live_state"]:
        return (
            line,
            f"live_state: {_quote(key)} is not a live-state case{near}: the cases are {_list(allowed)}",
        )
    if not path:
        return line, f"{_quote(key)} is not a policy key{near}: a policy has version, objects and live_state"
    return line, f"{where}: unknown key {_quote(key)}{near}: a rule has {_list(allowed)}"


def _missing_key(error: ValidationError, root: yaml.Node, path: list[Any], where: str) -> tuple[int, str]:
    name = next(k for k in error.validator_value if k not in error.instance)
    line = _line(root, path) if path else 1
    if "then" in error.relative_schema_path:  # a key this action needs
        return line, f"{where}: {error.instance.get('action')} needs {name}: add `{name}: {_EXAMPLES[name]}`"
    if path == ["objects"]:
        return (
            line,
            f"objects: {name} has no rule: add `{name}:` with `action: erase` (every kind is decided)",
        )
    if path == ["live_state"]:
        actions = _list(CASE_ACTIONS[name])
        return line, f"live_state: {name} has no rule: add `{name}:` with an action, one of {actions}"
    if not path and name == "version":
        return line, "the policy has no version: add `version: 1` at the top"
    if not path:
        return line, f"the policy has no `{name}:` map: add it, with a rule for each name (docs/policy.md)"
    if name == "action":
        return line, f"{where}: the rule has no action: add `action:` with one of {_list(_actions_for(path))}"
    return line, f"{where}: {name} is missing: add `{name}: {_EXAMPLES.get(name, '...')}`"


def _list(names: Iterable[str]) -> str:
    return ", ".join(names)

"""The package as an Airflow provider: what the providers manager loads from the installed entry
point, what the connection form receives, and each connection type's Test, run the way Airflow's
API server runs it, against the sandbox."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import pkgutil
import subprocess
import sys
import time
import uuid

import pytest
from airflow.models import Connection
from airflow.providers_manager import ProvidersManager
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

from gdpr_erasure.get_provider_info import CONNECTION_TYPES, PACKAGE_NAME, get_provider_info
from gdpr_erasure.hooks.checks import TEST_CONNECTION_RETRIES
from gdpr_erasure.hooks.retry import RetryPolicy
from gdpr_erasure.hooks.segment import _CONFIG_KEYS, SegmentHook
from gdpr_erasure.hooks.stripe import DEFAULT_PREVIEW_VERSION, StripeHook
from gdpr_erasure.hooks.twilio import TwilioHook

HOOKS = {"stripe": StripeHook, "twilio": TwilioHook, "segment": SegmentHook}
CONN_IDS = {"stripe": "stripe_default", "twilio": "twilio_default", "segment": "segment_default"}
# What each hook reads from the extra: the form must offer these names and no others (api_base is
# for the sandbox only and stays in the Extra JSON).
EXTRAS = {
    "stripe": {"account_id", "redaction_method", "preview_api_version", "rate_per_second"},
    "twilio": {"account_sid", "memory_store_id", "concurrency"},
    "segment": {*_CONFIG_KEYS, "rate_per_second"},
}


# --- what the providers manager loads ---------------------------------------------------------------


def test_the_installed_entry_point_is_get_provider_info():
    [entry] = [
        e
        for e in importlib.metadata.entry_points(group="apache_airflow_provider")
        if e.dist.name == PACKAGE_NAME
    ]
    assert entry.value == "gdpr_erasure.get_provider_info:get_provider_info"
    assert entry.load() is get_provider_info


def test_the_providers_manager_loads_the_package():
    provider = ProvidersManager().providers[PACKAGE_NAME]
    assert provider.version == importlib.metadata.version(PACKAGE_NAME)
    assert provider.data["versions"] == [provider.version]
    loaded = {k: v for k, v in provider.data.items() if k != "documentation-url"}  # added on load
    assert loaded == get_provider_info()


@pytest.mark.parametrize("conn_type", HOOKS)
def test_each_connection_type_resolves_to_its_hook(conn_type):
    hook = HOOKS[conn_type]
    info = ProvidersManagerTaskRuntime().hooks[conn_type]  # what Connection.get_hook() reads
    assert info is not None
    assert info.hook_class_name == f"{hook.__module__}.{hook.__name__}"
    assert info.package_name == PACKAGE_NAME
    assert (info.connection_type, info.hook_name) == (hook.conn_type, hook.hook_name)
    assert info.connection_id_attribute_name == hook.conn_name_attr
    assert getattr(hook(), hook.conn_name_attr) == hook.default_conn_name == CONN_IDS[conn_type]
    assert info.connection_testable


@pytest.mark.parametrize("conn_type", HOOKS)
def test_the_form_offers_exactly_the_extras_the_hook_reads(conn_type):
    widgets = ProvidersManager().connection_form_widgets
    ours = {w.field_name: w for key, w in widgets.items() if key.startswith(f"extra__{conn_type}__")}
    assert set(ours) == EXTRAS[conn_type]
    assert {name for name, w in ours.items() if w.is_sensitive} == (
        {"profile_api_token"} if conn_type == "segment" else set()
    )
    assert all(w.package_name == PACKAGE_NAME for w in ours.values())


def test_the_field_behaviours_hide_unused_fields_and_relabel_the_rest():
    behaviours = ProvidersManager().field_behaviours
    assert behaviours["stripe"]["hidden_fields"] == ["schema", "port", "login", "host"]
    assert behaviours["stripe"]["relabeling"]["password"].startswith("Secret key")
    assert behaviours["twilio"]["hidden_fields"] == ["schema", "port", "host"]
    assert set(behaviours["twilio"]["relabeling"]) == {"login", "password"}
    assert behaviours["segment"]["hidden_fields"] == ["schema", "port", "login"]
    assert behaviours["segment"]["relabeling"] == {"host": "Public API URL", "password": "Public API token"}


def test_the_connection_form_data_the_ui_receives():
    """``/ui/connections/hook_meta`` (the React form) is built from this, without importing hooks."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    segment, stripe = meta["segment"], meta["stripe"]
    assert segment.hook_name == "Twilio Segment"
    assert segment.hook_class_name == "gdpr_erasure.hooks.segment.SegmentHook"
    assert segment.standard_fields.login.hidden and segment.standard_fields.host.title == "Public API URL"
    assert segment.extra_fields["profile_api_token"]["schema"]["format"] == "password"
    assert segment.extra_fields["phone_id_type"]["value"] == "phone"
    assert stripe.extra_fields["redaction_method"]["schema"]["enum"] == ["delete", "redaction_job"]
    assert stripe.standard_fields.host.hidden and not stripe.standard_fields.password.hidden
    assert set(meta["twilio"].extra_fields) == EXTRAS["twilio"]


@pytest.mark.parametrize("conn_type", HOOKS)
def test_the_hooks_form_methods_say_what_the_provider_info_says(conn_type):
    """The pre-3.2 hook API (FAB/WTForms widgets) is built from the same declaration."""
    from flask import Flask
    from flask_babel import Babel
    from werkzeug.datastructures import MultiDict
    from wtforms import Form, PasswordField, StringField

    hook = HOOKS[conn_type]
    assert hook.get_ui_field_behaviour() == ProvidersManager().field_behaviours[conn_type]
    widgets = hook.get_connection_form_widgets()
    assert list(widgets) == list(CONNECTION_TYPES[conn_type]["conn-fields"])
    for name, field in widgets.items():
        expected = PasswordField if name == "profile_api_token" else StringField
        assert field.field_class is expected, name

    # The widgets bind and validate in a real form, as a posted FAB connection form does.
    app = Flask(__name__)
    Babel(app)
    with app.test_request_context():
        form_class = type("ConnectionForm", (Form,), dict(widgets))
        empty = form_class()
        assert empty.validate(), empty.errors  # every extra is optional
        if conn_type == "stripe":
            assert empty.redaction_method.data == "delete"
            assert not form_class(MultiDict({"redaction_method": "shred"})).validate()
            assert form_class(MultiDict({"redaction_method": "redaction_job"})).validate()


# --- the module lists, as the providers list them ------------------------------------------------


def test_every_listed_module_imports_and_every_module_is_listed():
    info = get_provider_info()
    for kind, package in (
        ("operators", "gdpr_erasure.operators"),
        ("sensors", "gdpr_erasure.sensors"),
        ("triggers", "gdpr_erasure.triggers"),
        ("hooks", "gdpr_erasure.hooks"),
    ):
        listed = [m for entry in info[kind] for m in entry["python-modules"]]
        assert len(listed) == len(set(listed)), kind
        for module in listed:
            importlib.import_module(module)
        names = {i["integration-name"] for i in info["integrations"]}
        assert {entry["integration-name"] for entry in info[kind]} <= names
        found = {
            f"{package}.{m.name}" for m in pkgutil.iter_modules(importlib.import_module(package).__path__)
        }
        if kind == "hooks":  # the hooks package also holds their shared helpers (retry, checks...)
            found = {f"{package}.{t}" for t in HOOKS}
        assert set(listed) == found, kind
    for notifier in info["notifications"]:
        module, _, name = notifier.rpartition(".")
        assert getattr(importlib.import_module(module), name)


# --- the CLI, in a process of its own --------------------------------------------------------------


def test_airflow_providers_list_and_hooks_show_the_package():
    def airflow(*args: str) -> list[dict]:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "providers", *args, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ.copy(),
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    providers = {p["package_name"]: p for p in airflow("list")}
    assert providers[PACKAGE_NAME]["version"] == importlib.metadata.version(PACKAGE_NAME)
    hooks = {h["connection_type"]: h for h in airflow("hooks")}
    for conn_type, hook in HOOKS.items():
        assert hooks[conn_type]["class"] == f"{hook.__module__}.{hook.__name__}"
        assert hooks[conn_type]["package_name"] == PACKAGE_NAME


# --- Test, as Airflow's API server runs it ------------------------------------------------------


def ui_test(conn: dict, monkeypatch) -> tuple[bool, str]:
    """What ``POST /api/v2/connections/test`` does with the form's fields: a Connection under a
    random id, exported as ``AIRFLOW_CONN_<ID>`` (its URI), then ``Connection.test_connection()``:
    the providers manager's hook for the type, built with that id."""
    extra = conn.get("extra")
    fields = {k: v for k, v in conn.items() if k != "extra"}
    connection = Connection(
        conn_id=f"t{uuid.uuid4().hex[:12]}", extra=json.dumps(extra) if extra else None, **fields
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_{connection.conn_id.upper()}", connection.get_uri())
    return connection.test_connection()


def secrets_of(conn: dict) -> list[str]:
    extra = conn.get("extra") or {}
    return [s for s in (conn.get("password"), extra.get("profile_api_token")) if s]


def assert_one_clean_line(message: str, conn: dict, sandbox) -> None:
    assert "\n" not in message
    for secret in secrets_of(conn):
        assert secret not in message
    # No person's identifier either, the Segment check profile's included.
    identifiers = [(conn.get("extra") or {}).get("check_user_id")]
    identifiers += [p[k] for p in sandbox.people() for k in ("email", "phone", "segment_user_id") if k in p]
    for identifier in identifiers:
        assert not identifier or identifier not in message


@pytest.mark.parametrize("conn_type", HOOKS)
def test_test_passes_against_the_sandbox(api_connections, sandbox, monkeypatch, conn_type):
    conn = api_connections[CONN_IDS[conn_type]]
    assert conn["conn_type"] == conn_type
    sandbox.clear_requests_log()
    ok, message = ui_test(conn, monkeypatch)
    assert ok, message
    assert message.startswith("ok: ") and "FAILED" not in message
    assert_one_clean_line(message, conn, sandbox)
    assert {r["method"] for r in sandbox.requests_log()} == {"GET"}  # read-only


# The sandbox refuses what the real APIs would: a key that is not a test-mode key, a login that is
# neither its Account SID nor an API key SID, a Profile token of another space.
@pytest.mark.parametrize(
    ("conn_type", "change", "says"),
    [
        ("stripe", {"password": "sk_live_not_a_real_key_4242"}, "rejected the secret key (HTTP 401)"),
        ("stripe", {"password": None}, "has no secret key (password)"),
        ("stripe", {"extra": {"redaction_method": "shred"}}, "redaction_method must be delete or"),
        ("twilio", {"login": "AC" + "0" * 32}, "Twilio refused connection"),
        ("twilio", {"extra": {"memory_store_id": None}}, "has no memory_store_id extra"),
        ("segment", {"password": None}, "has no Public API token (password)"),
        ("segment", {"extra": {"profile_api_token": "other-space-profile-token"}}, "HTTP 401"),
        ("segment", {"extra": {"check_user_id": None}}, "has no check_user_id extra"),
        ("segment", {"extra": {"space_id": None}}, "has no space_id extra"),
    ],
)
def test_test_fails_with_a_clear_line(api_connections, sandbox, monkeypatch, conn_type, change, says):
    conn = dict(api_connections[CONN_IDS[conn_type]])
    extra = dict(conn.get("extra") or {}, **change.get("extra", {}))
    conn.update({k: v for k, v in change.items() if k != "extra"})
    conn["extra"] = {k: v for k, v in extra.items() if v is not None}
    ok, message = ui_test(conn, monkeypatch)
    assert not ok
    assert says in message, message
    assert_one_clean_line(message, conn, sandbox)
    assert {r["method"] for r in sandbox.requests_log()} <= {"GET"}


@pytest.mark.parametrize(
    ("conn_type", "empty"),
    [
        ("stripe", {"redaction_method": "", "preview_api_version": ""}),
        ("stripe", {"redaction_method": None, "preview_api_version": None}),
        ("twilio", {"account_sid": ""}),
        ("segment", {"email_id_type": "", "phone_id_type": None}),
    ],
)
def test_empty_fields_a_form_saves_read_as_unset(api_connections, sandbox, monkeypatch, conn_type, empty):
    """A connection form saves the optional fields left empty as "" or null: the defaults apply."""
    conn = dict(api_connections[CONN_IDS[conn_type]])
    conn["extra"] = {**conn["extra"], **empty}
    ok, message = ui_test(conn, monkeypatch)
    assert ok, message
    if conn_type == "stripe":
        monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(conn))
        hook = StripeHook()
        assert (hook.redaction_method, hook.preview_api_version) == ("delete", DEFAULT_PREVIEW_VERSION)


def test_a_connection_of_type_http_keeps_working_for_the_pipeline(api_connections, sandbox, monkeypatch):
    """Deployments made before the ``segment`` type have an ``http`` connection with the same fields."""
    conn = dict(api_connections["segment_default"], conn_type="http")
    monkeypatch.setenv("AIRFLOW_CONN_SEGMENT_DEFAULT", json.dumps(conn))
    results = SegmentHook().checks()
    assert all(r.ok for r in results), results


def test_test_answers_within_seconds_when_the_provider_keeps_failing(api_connections, sandbox, monkeypatch):
    """A person waits on the Test button: a rate-limited or failing provider is reported, not
    retried for minutes (the pipeline's own retries are unchanged)."""
    hook = StripeHook()
    policy = hook.retry_policy
    sandbox.set_faults({"stripe": {"rate_429": 1.0, "retry_after": 60}})
    started = time.monotonic()
    ok, message = hook.test_connection()
    assert not ok and "HTTP 429" in message, message
    sandbox.set_faults({"stripe": {"rate_5xx": 1.0}})
    ok, message = hook.test_connection()
    assert not ok and "HTTP 50" in message, message
    assert time.monotonic() - started < 10
    attempts = [r for r in sandbox.requests_log() if r["route"] == "/v1/customers"]
    assert len(attempts) == 1 + TEST_CONNECTION_RETRIES.max_attempts
    assert hook.retry_policy is policy and policy == RetryPolicy()

"""Airflow connections: looked up once per process and reused for a few minutes, and the
connection form of our three types for hooks (:func:`form_widgets`, :func:`ui_field_behaviour`).

Inside a task, every ``get_connection`` is a round trip through the task supervisor to the API
server. A batch task creates hooks for each of its requests (and the HTTP provider looks the
connection up again on every call), so without this cache the lookups cost the API server more
CPU than the erasure itself (docs/benchmarks.md). Entries expire after :data:`TTL_SECONDS`, so a
rotated secret reaches running processes within minutes; a changed ``AIRFLOW_CONN_*`` variable
(tests, the demo) is a different entry at once. Expired entries are dropped whenever one is
added: the UI's Test button looks up a new random connection id each time, and those entries
(with their secrets) must not pile up in the API server.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from gdpr_erasure.get_provider_info import CONNECTION_TYPES

TTL_SECONDS = 300.0

_cache: dict[tuple[str, str | None], tuple[float, Any]] = {}
_lock = threading.Lock()


def cached_connection(conn_id: str) -> Any:
    """``BaseHook.get_connection(conn_id)``, at most once per :data:`TTL_SECONDS` per process."""
    from airflow.sdk import BaseHook

    key = (conn_id, os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"))
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < TTL_SECONDS:
        return hit[1]
    connection = BaseHook.get_connection(conn_id)
    with _lock:
        for stale in [k for k, (at, _) in _cache.items() if now - at >= TTL_SECONDS]:
            del _cache[stale]
        _cache[key] = (now, connection)
    return connection


def form_widgets(conn_type: str) -> dict[str, Any]:
    """``get_connection_form_widgets()`` of the hook of ``conn_type``: WTForms fields built from
    its ``conn-fields`` in :mod:`gdpr_erasure.get_provider_info` (Airflow 3.2+ reads those
    directly; this is the older hook API, for anything that still calls it).

    :param conn_type: ``stripe``, ``twilio`` or ``segment``.
    """
    # Imported here: only the API server has FAB, and workers never build a form.
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import PasswordField, StringField
    from wtforms.validators import AnyOf, Optional

    widgets: dict[str, Any] = {}
    for name, spec in CONNECTION_TYPES[conn_type]["conn-fields"].items():
        schema = spec["schema"]
        validators: list[Any] = [Optional()]
        if "enum" in schema:
            validators.append(AnyOf(schema["enum"]))
        secret = schema.get("format") == "password"
        widgets[name] = (PasswordField if secret else StringField)(
            lazy_gettext(spec["label"]),
            description=spec.get("description", ""),
            default=schema.get("default"),
            validators=validators,
            widget=BS3PasswordFieldWidget() if secret else BS3TextFieldWidget(),
        )
    return widgets


def ui_field_behaviour(conn_type: str) -> dict[str, Any]:
    """``get_ui_field_behaviour()`` of the hook of ``conn_type``, from its ``ui-field-behaviour``.

    :param conn_type: ``stripe``, ``twilio`` or ``segment``.
    """
    behaviour = CONNECTION_TYPES[conn_type]["ui-field-behaviour"]
    return {
        "hidden_fields": list(behaviour.get("hidden-fields", [])),
        "relabeling": dict(behaviour.get("relabeling", {})),
        "placeholders": dict(behaviour.get("placeholders", {})),
    }

"""Airflow connections, looked up once per process and reused for a few minutes.

Inside a task, every ``get_connection`` is a round trip through the task supervisor to the API
server. A batch task creates hooks for each of its requests (and the HTTP provider looks the
connection up again on every call), so without this cache the lookups cost the API server more
CPU than the erasure itself (docs/benchmarks.md). Entries expire after :data:`TTL_SECONDS`, so a
rotated secret reaches running processes within minutes; a changed ``AIRFLOW_CONN_*`` variable
(tests, the demo) is a different entry at once.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

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
        _cache[key] = (now, connection)
    return connection

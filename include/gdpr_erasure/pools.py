"""Airflow pools that keep the pipeline inside each provider's rate limits.

A pool slot is one running task, and a task works on up to ``GDPR_ERASURE_CONCURRENCY`` (8)
requests of its batch at a time, each calling the API sequentially: one slot is up to 8
concurrent calls, roughly 25 to 80 calls a second against the real services (100 to 300 ms a
call). Deferred sensors hold no slot; the hooks back off on 429 whatever the pools allow.

| Pool | Slots | Concurrent calls | Provider limit it protects |
|---|---|---|---|
| ``stripe_api`` | 4 | 32 | 100 read/write ops/s in live mode (25/s in test mode: expect 429s, retried) |
| ``twilio_api`` | 4 | 32 | concurrency-based; 20429 means too many concurrent requests |
| ``segment_api`` | 2 | 16 | Profile API 100 req/s per space; ``POST /regulations`` 600/min |
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

POOLS: dict[str, tuple[int, str]] = {
    "stripe_api": (4, "Stripe API: 100 ops/s live, 25 ops/s test mode; 8 calls at a time per slot"),
    "twilio_api": (4, "Twilio API: concurrency-limited (error 20429); 8 calls at a time per slot"),
    "segment_api": (2, "Segment Profile API 100 req/s per space; regulations 600/min; 8 per slot"),
}


def pools_file() -> dict[str, dict[str, Any]]:
    """:data:`POOLS` in the format of ``airflow pools import`` (and ``airflow pools export``).

    ``include_deferred`` is False: a deferred sensor waits in the triggerer and calls nothing.
    """
    return {
        name: {"slots": slots, "description": description, "include_deferred": False}
        for name, (slots, description) in POOLS.items()
    }


def create_pools(run=subprocess.run) -> list[str]:
    """Create or resize the pools with ``airflow pools import`` (idempotent: it upserts).

    Airflow's own command, not the ``Pool`` model: the CLI is the supported way in, and one
    import starts the Airflow CLI once for all the pools (each start costs seconds).

    :param run: runs the command (``subprocess.run``'s signature).
    """
    with tempfile.TemporaryDirectory(prefix="gdpr-pools-") as folder:
        path = Path(folder) / "pools.json"
        path.write_text(json.dumps(pools_file(), indent=2))
        run([sys.executable, "-m", "airflow", "pools", "import", str(path)], check=True, capture_output=True)
    return list(POOLS)

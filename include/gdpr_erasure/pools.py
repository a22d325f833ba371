"""Airflow pools that keep the pipeline inside each provider's rate limits.

A pool slot is one running task; each task calls its API sequentially, at roughly 3 to 10
calls a second against the real services (100 to 300 ms a call). Deferred sensors hold no slot.

| Pool | Slots | Provider limit it protects |
|---|---|---|
| ``stripe_api`` | 8 | 100 read/write ops/s in live mode, 25/s in test mode |
| ``twilio_api`` | 8 | concurrency-based; 20429 means too many concurrent requests |
| ``segment_api`` | 4 | Profile API 100 req/s per space; ``POST /regulations`` 600/min |
"""

from __future__ import annotations

import subprocess
import sys

POOLS: dict[str, tuple[int, str]] = {
    "stripe_api": (8, "Stripe API: 100 ops/s live, 25 ops/s test mode"),
    "twilio_api": (8, "Twilio API: concurrency-limited (error 20429)"),
    "segment_api": (4, "Segment Profile API 100 req/s per space; regulations 600/min"),
}


def create_pools(run=subprocess.run) -> list[str]:
    """Create or resize the pools with Airflow's own CLI (idempotent: ``pools set`` upserts)."""
    for name, (slots, description) in POOLS.items():
        run(
            [sys.executable, "-m", "airflow", "pools", "set", name, str(slots), description],
            check=True,
            capture_output=True,
        )
    return list(POOLS)

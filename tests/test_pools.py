"""The pools, created with Airflow's own ``pools import`` in a real metadata database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gdpr_erasure.pools import POOLS, create_pools


def _exported(tmp_path) -> dict:
    path = tmp_path / "export.json"
    subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "export", str(path)],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return json.loads(path.read_text())


def test_pools_are_created_and_resized_by_airflows_import(airflow_db, tmp_path):
    subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "set", "stripe_api", "99", "resized by hand"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    assert create_pools() == list(POOLS)

    pools = _exported(tmp_path)
    for name, (slots, description) in POOLS.items():
        assert pools[name]["slots"] == slots
        assert pools[name]["description"] == description
        assert pools[name]["include_deferred"] is False  # deferred sensors hold no slot

"""`gdpr-erasure roles sync` on a real FAB auth manager database (SQLite, migrated by Airflow).

Each step runs in its own process with its own Airflow home, as airflow-init runs it: the FAB
security manager reads its settings once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
SIMPLE = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
BIN = Path(sys.executable).parent

# Prints {role: [[action, resource], ...]} for the roles the tests look at.
DUMP = """
import json
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
with get_application_builder() as ab:
    print(json.dumps({
        name: sorted([p.action.name, p.resource.name] for p in ab.sm.find_role(name).permissions)
        for name in ("Auditor", "Viewer", "Admin", "Op")
    }))
"""

# Someone widens the Auditor role by hand and takes the audit away from it.
TAMPER = """
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
with get_application_builder() as ab:
    sm = ab.sm
    role = sm.find_role("Auditor")
    sm.add_permission_to_role(role, sm.get_permission("can_edit", "DAGs"))
    sm.add_permission_to_role(role, sm.get_permission("can_create", "DAG Runs"))
    sm.remove_permission_from_role(role, sm.get_permission("can_read", "GDPR Audit"))
"""


def _env(home: Path, auth_manager: str = FAB) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__AUTH_MANAGER=auth_manager,
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)


def _last_line(stdout: str) -> str:
    return [line for line in stdout.splitlines() if line.strip()][-1]


@pytest.fixture(scope="module")
def fab_home(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("fab-home")
    env = _env(home)
    migrated = _run([str(BIN / "airflow"), "db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    return env


def _roles(env: dict[str, str]) -> dict[str, set[tuple[str, str]]]:
    dumped = _run([sys.executable, "-c", DUMP], env)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    return {name: {tuple(p) for p in perms} for name, perms in json.loads(_last_line(dumped.stdout)).items()}


def test_the_auditor_role_reads_what_a_viewer_reads_plus_the_audit_and_writes_nothing(fab_home):
    first = _run([str(BIN / "gdpr-erasure"), "roles", "sync"], fab_home)
    assert first.returncode == 0, first.stderr[-2000:]
    assert _last_line(first.stdout).startswith("Auditor: created")

    roles = _roles(fab_home)
    audit = ("can_read", "GDPR Audit")
    assert audit in roles["Auditor"]
    assert audit in roles["Admin"]
    assert audit not in roles["Viewer"]
    assert audit not in roles["Op"]
    viewer_reads = {p for p in roles["Viewer"] if p[0] in ("can_read", "menu_access")}
    assert viewer_reads <= roles["Auditor"]
    assert ("can_read", "Task Logs") in roles["Auditor"]  # auditors review task logs
    assert ("can_read", "Plugins") in roles["Auditor"]  # the UI's menu entry for the page
    writes = {p for p in roles["Auditor"] if p[0] not in ("can_read", "menu_access")}
    assert writes == {("can_edit", "My Password"), ("can_edit", "My Profile")}

    again = _run([str(BIN / "gdpr-erasure"), "roles", "sync"], fab_home)
    assert again.returncode == 0
    assert _last_line(again.stdout).startswith("Auditor: up to date (0 permissions added, 0 removed)")


def test_sync_repairs_a_widened_or_narrowed_auditor_role(fab_home):
    assert _run([str(BIN / "gdpr-erasure"), "roles", "sync"], fab_home).returncode == 0
    tampered = _run([sys.executable, "-c", TAMPER], fab_home)
    assert tampered.returncode == 0, tampered.stderr[-2000:]
    assert ("can_edit", "DAGs") in _roles(fab_home)["Auditor"]

    repaired = _run([str(BIN / "gdpr-erasure"), "roles", "sync"], fab_home)
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    assert "removed from Auditor: can_edit on DAGs" in repaired.stdout
    assert "removed from Auditor: can_create on DAG Runs" in repaired.stdout
    auditor = _roles(fab_home)["Auditor"]
    assert ("can_edit", "DAGs") not in auditor
    assert ("can_create", "DAG Runs") not in auditor
    assert ("can_read", "GDPR Audit") in auditor


def test_sync_under_another_auth_manager_is_one_line_and_exit_2(tmp_path):
    result = _run([str(BIN / "gdpr-erasure"), "roles", "sync"], _env(tmp_path, SIMPLE))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("roles sync: needs the FAB auth manager")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

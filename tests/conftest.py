"""Shared pytest fixtures for the whole test suite.

Sections (add new groups of fixtures as new sections below, each with its own heading):

* Tiers: every test gets one of the markers ``unit``, ``dag`` or ``stack`` from its path (and
  ``browser`` too when it drives Chromium), so ``pytest -m unit`` and the make targets select it.
* API sandbox: ``sandbox_url`` (one real sandbox process per test session, started through the
  real CLI) and ``sandbox`` (re-seeds it before a test and returns a small client).
"""

from __future__ import annotations

import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gdpr_erasure.localstack import SANDBOX_READY, sandbox_command

REPO_ROOT = Path(__file__).resolve().parent.parent

# Airflow home, compliance store and connections to the sandbox (tests/airflow_support.py).
pytest_plugins = ["airflow_support"]

# --- Tiers --------------------------------------------------------------------------------------
# unit, dag and stack (pyproject.toml's markers): `make test-fast` runs unit, `make test-dag` dag,
# `make test-stack` stack, `make test` all three. A test's tier comes from its path, so a new test
# file has one without anyone marking it.

TESTS_DIR = Path(__file__).resolve().parent
TIERS = ("unit", "dag", "stack")  # lightest first

# By the directory under tests/; tests elsewhere are unit.
TIER_OF_DIRECTORY = {"dag": "dag", "e2e": "dag", "stack": "stack"}

# Files whose tier is not their directory's.
TIER_OF_FILE = {
    # Checks docker-compose.yaml, .env.example and the Dockerfile as files: starts nothing.
    "stack/test_compose_file.py": "unit",
    # Airflow's API server as a process, with the plugins mounted as deployed.
    "intake/test_intake_airflow.py": "stack",
    # airflow-init's steps on the FAB auth manager, each in an Airflow process of its own.
    "auditor/test_roles.py": "stack",
}

# Wherever it lives, a test using one of these fixtures is at least in that tier.
TIER_OF_FIXTURE = {"pipeline": "dag", "finished_stack": "dag", "celery_stack": "stack"}


def tier_of(item: pytest.Item) -> str:
    try:
        relative = Path(item.path).resolve().relative_to(TESTS_DIR)
    except ValueError:  # a test file outside tests/
        relative = Path(item.path.name)
    tier = TIER_OF_FILE.get(relative.as_posix())
    if tier is None:
        tier = TIER_OF_DIRECTORY.get(relative.parts[0], "unit") if len(relative.parts) > 1 else "unit"
    for fixture in getattr(item, "fixturenames", ()):
        tier = max(tier, TIER_OF_FIXTURE.get(fixture, "unit"), key=TIERS.index)
    return tier


def drives_a_browser(item: pytest.Item) -> bool:
    return item.path.name.startswith("test_browser") or "browser_page" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item))
        if drives_a_browser(item):
            item.add_marker("browser")


# --- API sandbox --------------------------------------------------------------------------------

SANDBOX_START_TIMEOUT = 20.0


class SandboxClient:
    """Helpers over the sandbox's control API (``/_sandbox``) for one test."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()

    def _control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.http.request(method, f"{self.base_url}/_sandbox{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response

    def reset(self, **overrides: Any) -> dict[str, Any]:
        """Re-seed, clear faults and the request log; ``overrides`` change seed, timings, ..."""
        return self._control("POST", "/reset", json=overrides).json()

    def catalog(self) -> dict[str, Any]:
        """The whole ``/_sandbox/people`` answer: accounts, settings and people."""
        return self._control("GET", "/people").json()

    def accounts(self) -> dict[str, Any]:
        return self.catalog()["accounts"]

    def people(self) -> list[dict[str, Any]]:
        return self.catalog()["people"]

    def person(self, key: str) -> dict[str, Any]:
        return next(p for p in self.people() if p["key"] == key)

    def state(self, key: str) -> dict[str, Any]:
        """What remains of a person in every emulated service."""
        return self._control("GET", f"/state/person/{key}").json()

    def set_faults(self, faults: dict[str, Any]) -> dict[str, Any]:
        return self._control("PUT", "/faults", json=faults).json()

    def clear_requests_log(self) -> None:
        self._control("DELETE", "/requests")

    def request_counts(self) -> list[dict[str, Any]]:
        """Exact totals per route and status (the log keeps only the newest calls)."""
        return self._control("GET", "/requests/counts").json()

    def requests_log(self) -> list[dict[str, Any]]:
        return self._control("GET", "/requests").json()


def _read_ready_line(process: subprocess.Popen[str], timeout: float) -> str | None:
    """The sandbox's first stdout line, or ``None`` if it does not come within ``timeout``."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True)
    reader.start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def _wait_healthy(base_url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base_url}/_sandbox/health", timeout=1).ok:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """Base URL of a sandbox started as a subprocess through the real ``gdpr-erasure`` CLI."""
    command = sandbox_command("--regulation-seconds", "2")
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            deadline = time.monotonic() + SANDBOX_START_TIMEOUT
            line = _read_ready_line(process, SANDBOX_START_TIMEOUT) or ""
            base_url = line.strip().removeprefix(SANDBOX_READY)
            if not line.startswith(SANDBOX_READY) or not _wait_healthy(base_url, deadline):
                process.kill()
                process.wait()
                stderr.seek(0)
                pytest.fail(
                    f"the sandbox did not start within {SANDBOX_START_TIMEOUT:.0f} s "
                    f"(exit code {process.returncode}, stdout {line!r}); stderr:\n{stderr.read()}"
                )
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def sandbox(sandbox_url: str) -> SandboxClient:
    """A freshly re-seeded sandbox (default seed, no faults, empty request log)."""
    client = SandboxClient(sandbox_url)
    client.reset()
    return client

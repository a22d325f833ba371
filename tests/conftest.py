"""Shared pytest fixtures for the whole test suite.

Sections (add new groups of fixtures as new sections below, each with its own heading):

* Tiers: every test gets one of the markers ``unit``, ``dag`` or ``stack`` from its path (and
  ``browser`` too when it drives Chromium), so ``pytest -m unit`` and the make targets select it.
* API sandbox: ``sandbox_url`` (one real sandbox process per test session, started through the
  real CLI by ``sandbox.launcher``) and ``sandbox`` (re-seeds it before a test and returns a
  ``sandbox.client.SandboxClient``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import SANDBOX_PROGRAM
from sandbox.client import SandboxClient
from sandbox.launcher import SandboxStartError, start_sandbox

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
# Started by the one launcher (sandbox.launcher) through the real `gdpr-erasure sandbox serve`, and
# driven by the one client (sandbox.client): the demo, the stack harness and the benchmarks use them too.


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """Base URL of a sandbox started as a subprocess through the real ``gdpr-erasure`` CLI."""
    try:
        sandbox = start_sandbox("--regulation-seconds", "2", program=SANDBOX_PROGRAM, cwd=REPO_ROOT)
    except SandboxStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield sandbox.url
    finally:
        sandbox.stop()


@pytest.fixture
def sandbox(sandbox_url: str) -> SandboxClient:
    """A freshly re-seeded sandbox (default seed, no faults, empty request log)."""
    client = SandboxClient(sandbox_url, timeout=10)
    client.reset()
    return client

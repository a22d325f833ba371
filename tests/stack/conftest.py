"""Fixtures of the compose-stack tests: ``celery_stack``, the docker-compose stack run as local
processes (see devstack/composestack.py), started once per session and stopped at its end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium_page

from devstack.composestack import ComposeStack, StackError
from devstack.composestack import celery_stack as start_celery_stack


@pytest.fixture(scope="session")
def celery_stack(tmp_path_factory) -> Iterator[ComposeStack]:
    """API server, scheduler, DAG processor, triggerer and Celery worker with the compose file's
    settings, on the local PostgreSQL and Redis (a missing one fails the test)."""
    root = tmp_path_factory.mktemp("celery-stack")
    try:
        with start_celery_stack(root) as stack:
            yield stack
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A Chromium page for the browser tests (support/browser.py)."""
    with chromium_page() as page:
        yield page


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: ``$GDPR_SCREENSHOTS_DIR`` (``make screenshots`` points it at
    docs/screenshots, which the README shows) or a temporary directory."""
    directory = Path(os.environ.get("GDPR_SCREENSHOTS_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory

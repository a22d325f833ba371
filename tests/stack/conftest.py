"""Fixtures of the compose-stack tests: ``celery_stack``, the docker-compose stack run as local
processes (see devstack/composestack.py), started once per session and stopped at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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

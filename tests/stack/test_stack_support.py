"""The stack fixture's own machinery, without starting the stack: missing services fail loudly,
and stopping a process group leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from devstack.composestack import StackError, _stop_groups, check_services, free_port


def test_a_missing_postgresql_is_an_error_not_a_skip():
    with pytest.raises(StackError, match=r"PostgreSQL at .* is not reachable"):
        check_services(
            f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/postgres", "redis://127.0.0.1:1/0"
        )


def test_a_missing_redis_is_an_error_not_a_skip():
    pg = os.environ.get("GDPR_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    with pytest.raises(StackError, match=r"Redis at .* is not reachable"):
        check_services(pg, f"redis://127.0.0.1:{free_port()}/0")


def test_stopping_a_group_stops_its_children_too():
    # A leader that ignores SIGTERM, with a child that would outlive it.
    leader = subprocess.Popen(
        ["bash", "-c", "trap '' TERM; sleep 300 & wait"],
        start_new_session=True,
    )
    time.sleep(0.3)
    started = time.monotonic()
    _stop_groups([leader], timeout=1.0)
    assert time.monotonic() - started < 10
    assert leader.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(leader.pid, 0)

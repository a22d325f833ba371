"""Fixtures for the sandbox's own tests.

Test modules here are named ``test_sandbox_*.py`` and there is no ``__init__.py``, so that this
directory never shadows the real ``sandbox`` package. Shared helpers live in
``sandbox_support.py``.
"""

from __future__ import annotations

import pytest
from sandbox_support import Api


@pytest.fixture
def api(sandbox) -> Api:
    """HTTP helpers for the freshly reset sandbox."""
    return Api(sandbox.base_url, sandbox.accounts())

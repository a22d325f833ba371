"""Fixtures of the end-to-end evidence tests (see e2e_support.py)."""

from e2e_support import finished_stack

__all__ = ["finished_stack"]

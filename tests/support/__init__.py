"""Values and helpers that fixtures (``conftest.py``) and test modules share.

``tests/`` is on the import path (``pythonpath`` in pyproject.toml), so ``from support.intake import
...`` works from any test and in any order of the paths given to pytest. A ``conftest.py`` is not a
module to import from: pytest loads each one under the same name ``conftest``, so ``from conftest
import X`` finds whichever was loaded last.
"""

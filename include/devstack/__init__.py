"""Development harnesses, never deployed: the demo (``make demo``), a local stack on SQLite
(:mod:`devstack.localstack`), and the compose file's services as local processes
(:mod:`devstack.composestack`, the stack tests and ``make bench``).

They import the runtime package (``gdpr_erasure``) and the sandbox (``sandbox``); nothing a
production Airflow component runs imports them. They live in a source checkout (the DAGs, the
plugins and the compose file are found next to them) and install as the distribution
gdpr-erasure-devstack (``include/devstack/pyproject.toml``, ``make install``), never in the
gdpr-erasure wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The source checkout (include/devstack/ is two levels below it).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: ``gdpr-erasure sandbox``: the command the compose file's sandbox service runs. The harnesses
#: and the tests start their sandbox through it (with :mod:`sandbox.launcher`), so the CLI's
#: delegation to the sandbox is what they exercise.
SANDBOX_PROGRAM = (sys.executable, "-m", "gdpr_erasure.cli", "sandbox")

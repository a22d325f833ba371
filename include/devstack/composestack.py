"""The docker-compose stack without Docker: the same Airflow processes, with the same settings,
run locally against this machine's PostgreSQL and Redis. The stack tests and the throughput
benchmark (``make bench``) run on it.

``docker-compose.yaml`` is the one source of truth. :func:`compose_stack` reads it and, like
``docker compose up`` would:

1. interpolates it with a test ``.env`` (:func:`stack_variables`): unique database names, fresh
   secrets, ``127.0.0.1`` instead of the service host names ``postgres`` and ``redis``, and the
   API server's real port instead of ``airflow-apiserver:8080``;
2. creates Airflow's database (the ``postgres`` service's job) and starts the API sandbox (the
   ``sandbox`` profile's service, on loopback here, with :mod:`sandbox.launcher`);
3. runs the ``airflow-init`` service's script with ``bash`` and that service's environment
   (migration, roles, pools, then ``gdpr-erasure deploy init``: compliance database and its owner
   and pipeline roles, connections, users);
4. starts the API server, scheduler, DAG processor, triggerer and Celery worker with their
   services' ``command`` and ``environment``, each in its own process group, and waits until
   each one is up. With ``executor="LocalExecutor"`` the scheduler runs the tasks itself and
   no worker is started (the benchmark's setting); ``workers=2`` starts a second Celery worker
   (as ``docker compose up --scale airflow-worker=2`` would), its own hostname on the same queue.

What differs from the containers is listed in :func:`local_overrides` and :data:`EXTRA_ARGS`:
an Airflow home, DAG and plugin folders in the work tree, free ports on 127.0.0.1, a Celery queue
and worker name of its own (the Redis may be shared), no log-serving ports (the processes share
one Airflow home), and no cron schedule (the tests trigger their runs). On exit every process
group is stopped (SIGTERM, then SIGKILL) and the databases, their roles and the queue are
removed, even after a failure. A missing PostgreSQL or Redis raises :class:`StackError`: the
test fails, never skips.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from devstack import REPO_ROOT, SANDBOX_PROGRAM
from sandbox.client import SandboxClient
from sandbox.launcher import SandboxStartError, start_sandbox

# A source checkout: the compose file is there.
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"

# The services the stack runs as processes, in start order.
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
INIT_SERVICE = "airflow-init"

# This machine's services (CI runs on it too). A missing one fails the test, never skips it.
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

INIT_TIMEOUT = 240.0
START_TIMEOUT = 150.0  # for all processes together; the API server alone takes 20-40 s here
STOP_TIMEOUT = 20.0


class StackError(RuntimeError):
    """The stack could not start, or a wait timed out; the message ends with the process logs."""


# --- docker-compose.yaml ------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as YAML sees it (anchors and ``<<`` merges resolved), not interpolated."""
    return yaml.safe_load(path.read_text())


_INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


class InterpolationError(ValueError):
    pass


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose-specification interpolation: ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}``,
    and ``$$`` for a literal ``$``. (Nested expressions in defaults are not needed here.)"""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return variables.get(match["named"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None:
            raise InterpolationError(f"invalid interpolation: {match[0]!r}")
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        is_set = name in variables
        is_nonempty = bool(variables.get(name))
        if op is None:
            return variables.get(name, "")
        present = is_nonempty if op.startswith(":") else is_set
        if op.endswith("-"):
            return variables[name] if present else arg
        if op.endswith("?"):
            if not present:
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return variables[name]
        return arg if present else ""  # "+"

    return _INTERPOLATION.sub(replace, value)


def interpolate_tree(node: Any, variables: dict[str, str]) -> Any:
    """Interpolate every string in a parsed compose document (keys are left as they are)."""
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, variables) for item in node]
    return node


def variables_used(path: Path = COMPOSE_FILE) -> set[str]:
    """Every variable the compose file interpolates."""
    names = set()
    for match in _INTERPOLATION.finditer(path.read_text()):
        if match["named"]:
            names.add(match["named"])
        elif match["braced"] is not None:
            braced = _BRACED.fullmatch(match["braced"])
            if braced:
                names.add(braced["name"])
    return names


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """``KEY=value`` lines of a compose ``.env`` file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def service_environment(compose: dict[str, Any], service: str, variables: dict[str, str]) -> dict[str, str]:
    environment = compose["services"][service].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return {
        key: interpolate(str(value), variables)
        for key, value in environment.items()
        if value is not None  # a bare name passes the host's value through: not used here
    }


def service_command(compose: dict[str, Any], service: str, variables: dict[str, str]) -> list[str]:
    command = compose["services"][service]["command"]
    if isinstance(command, str):
        return [interpolate(part, variables) for part in shlex.split(command)]
    return [interpolate(str(part), variables) for part in command]


# --- the test .env and the local differences ------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_variables(
    *, uid: str, pg: URL, redis_url: str, api_url: str, sandbox_url: str, root: Path
) -> dict[str, str]:
    """The ``.env`` this stack is interpolated with (the keys of ``.env.example``)."""
    from cryptography.fernet import Fernet

    redis = urlsplit(redis_url)
    return {
        "POSTGRES_HOST": pg.host or "127.0.0.1",
        "POSTGRES_PORT": str(pg.port or 5432),
        "POSTGRES_USER": pg.username or "postgres",
        # Trust authentication ignores it; the compose file requires one.
        "POSTGRES_PASSWORD": pg.password or "unused-with-trust-auth",
        "AIRFLOW_DB_NAME": f"gdpr_stack_{uid}",
        "COMPLIANCE_DB_NAME": f"gdpr_stack_{uid}_compliance",
        # The owner and the pipeline's role, as in production: airflow-init creates them (roles
        # are global to the server: unique names, dropped with the databases).
        "COMPLIANCE_DB_OWNER": f"gdpr_stack_{uid}_owner",
        "COMPLIANCE_DB_OWNER_PASSWORD": secrets.token_hex(16),
        "COMPLIANCE_DB_USER": f"gdpr_stack_{uid}_pipeline",
        "COMPLIANCE_DB_PASSWORD": secrets.token_hex(16),
        "GDPR_CREATE_COMPLIANCE_DB": "true",
        "REDIS_HOST": redis.hostname or "127.0.0.1",
        "REDIS_PORT": str(redis.port or 6379),
        "REDIS_DB": redis.path.strip("/") or "0",
        "AIRFLOW_PUBLIC_URL": api_url,
        "AIRFLOW_EXECUTION_API_URL": f"{api_url}/execution/",
        "AIRFLOW_ADMIN_USERNAME": "admin",
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "AIRFLOW_AUDITOR_USERNAME": "auditor",
        "AIRFLOW_AUDITOR_PASSWORD": secrets.token_urlsafe(18),
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_API_SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW_WORKER_CONCURRENCY": "6",  # two cores here
        "GDPR_HASH_KEY": secrets.token_hex(32),
        "GDPR_HASH_KEY_ID": f"stack-{uid}",
        "GDPR_INTAKE_SIGNING_SECRET": secrets.token_hex(32),
        "GDPR_SANDBOX_URL": sandbox_url,
        "GDPR_LEDGER_WITNESS_URI": f"file://{root / 'witness'}",
        "GDPR_ERASURE_POLL_SECONDS": "0.5",
    }


def local_overrides(
    *, root: Path, api_port: int, queue: str, dags_folder: Path = REPO_ROOT / "dags"
) -> dict[str, str]:
    """What a process here needs instead of a container: its files, free ports, an own queue."""
    return {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        # The Redis may be shared: tasks go to a queue only this stack's worker reads.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        # Runs are triggered by the tests, not by the @daily schedule on unpausing.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # `airflow`, `gdpr-erasure` and `python` in the init script are this virtualenv's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


# Extra arguments for the commands of the compose file. Task logs are read from the shared
# Airflow home here, so the worker and the triggerer need not serve them on a public port.
EXTRA_ARGS = {
    "airflow-worker": ["--skip-serve-logs"],
    "airflow-triggerer": ["--skip-serve-logs"],
}


def host_environment() -> dict[str, str]:
    """This process's environment without any Airflow or pipeline setting (the test session's
    own Airflow home, SQLite store and hash key must not leak into the stack)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "GDPR_", "_AIRFLOW"))
    }


# --- the running stack -----------------------------------------------------------------------------


@dataclass
class ComposeStack:
    """A running stack. ``api_url`` is the API server (UI, ``/api/v2``, ``/gdpr`` intake);
    ``sandbox`` is the control client of its API sandbox."""

    root: Path
    uid: str
    api_url: str
    username: str
    password: str
    variables: dict[str, str]
    env: dict[str, dict[str, str]]  # per service
    queue: str
    worker_name: str | None  # the first worker's
    store_url: str
    airflow_db_url: str
    sandbox: SandboxClient
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker_names: list[str] = field(default_factory=list)  # every worker's Celery hostname
    logs: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None

    @property
    def sandbox_url(self) -> str:
        """The API sandbox's base URL."""
        return self.sandbox.base_url

    # -- REST API ------------------------------------------------------------------------------

    @property
    def intake_url(self) -> str:
        """The signed intake mounted by plugins/gdpr_intake_plugin.py."""
        return f"{self.api_url}/gdpr"

    @property
    def intake_secret(self) -> str:
        """The intake's signing secret (connection ``gdpr_intake``, created by airflow-init)."""
        return self.variables["GDPR_INTAKE_SIGNING_SECRET"]

    def token(self, refresh: bool = False) -> str:
        """A JWT for the admin user."""
        if self._token is None or refresh:
            self._token = self.login(self.username, self.password)
        return self._token

    def login(self, username: str, password: str) -> str:
        """A JWT for any user (``POST /auth/token``, which the FAB auth manager serves)."""
        response = requests.post(
            f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        return response.json()["access_token"]

    @property
    def auditor(self) -> tuple[str, str]:
        """The Auditor user airflow-init created (username, password)."""
        return self.variables["AIRFLOW_AUDITOR_USERNAME"], self.variables["AIRFLOW_AUDITOR_PASSWORD"]

    def api(self, method: str, path: str, *, expect: int | tuple[int, ...] | None = None, **kwargs: Any):
        """``/api/v2`` call with the admin's token; ``expect`` checks the status code."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        response = requests.request(
            method, f"{self.api_url}/api/v2{path}", headers=headers, timeout=30, **kwargs
        )
        if response.status_code == 401:  # expired token
            headers["Authorization"] = f"Bearer {self.token(refresh=True)}"
            response = requests.request(
                method, f"{self.api_url}/api/v2{path}", headers=headers, timeout=30, **kwargs
            )
        wanted = (expect,) if isinstance(expect, int) else expect
        if wanted and response.status_code not in wanted:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response

    def unpause(self, dag_id: str = "gdpr_erasure") -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}, expect=200)

    def trigger_dag(self, conf: dict[str, Any] | None = None, dag_id: str = "gdpr_erasure") -> str:
        """Unpause the DAG and trigger a run over the REST API; returns its run id."""
        self.unpause(dag_id)
        body = {"logical_date": None, "conf": conf or {}}
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json=body, expect=200).json()
        return run["dag_run_id"]

    def dag_run(self, run_id: str, dag_id: str = "gdpr_erasure") -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}", expect=200).json()

    def wait_for_dag_run(self, run_id: str, timeout: float, dag_id: str = "gdpr_erasure") -> dict[str, Any]:
        """Poll the run until it succeeds or fails; on timeout raise with every process's log."""
        return self.wait_for(
            f"DAG run {run_id}",
            lambda: run if (run := self.dag_run(run_id, dag_id))["state"] in ("success", "failed") else None,
            timeout,
            interval=1.0,
        )

    def task_instances(self, run_id: str, dag_id: str = "gdpr_erasure") -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(items)},
                expect=200,
            ).json()
            items += page["task_instances"]
            if not page["task_instances"] or len(items) >= page["total_entries"]:
                return items

    # -- compliance store, sandbox -------------------------------------------------------------

    def store(self):
        from gdpr_erasure.store import ComplianceStore

        return ComplianceStore.from_url(self.store_url)

    def submit(self, keys: list[str], prefix: str = "req") -> list[str]:
        """Put requests for these sandbox people into the intake table (store API)."""
        from devstack.localstack import submit_people

        return submit_people(self.store_url, [self.people[key] for key in keys], prefix, source="stack")

    # -- processes and their logs ----------------------------------------------------------------

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def diagnostics(self, lines: int = 40) -> str:
        parts = []
        for name in self.logs:
            process = self.processes.get(name)
            status = "" if process is None else f" (pid {process.pid}, exit code {process.poll()})"
            parts.append(
                f"----- {name}{status}: last {lines} lines of {self.logs[name]}\n{self.log_tail(name, lines)}"
            )
        return "\n".join(parts)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(f"{name} exited with code {process.returncode}\n{self.diagnostics()}")

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        """Call ``probe`` until it returns something truthy; fail (with the logs) if a process dies
        or ``timeout`` passes. Connection errors count as "not yet"."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            self.check_alive()
            try:
                result = probe()
                if result:
                    return result
            except (requests.RequestException, OSError) as exc:
                last_error = exc
            if time.monotonic() > deadline:
                message = f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})"
                report = f"{message}\n{self.diagnostics()}"
                print(report, file=sys.stderr)
                raise StackError(report)
            time.sleep(interval)


# --- starting and stopping --------------------------------------------------------------------------


def check_services(pg_url: str, redis_url: str) -> None:
    """PostgreSQL and Redis must be there: raise (the fixture fails, never skips) if not."""
    import redis

    try:
        engine = create_engine(pg_url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        raise StackError(
            f"PostgreSQL at {make_url(pg_url).render_as_string()} is not reachable: {exc}"
        ) from exc
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except Exception as exc:
        raise StackError(f"Redis at {redis_url} is not reachable: {exc}") from exc


def _admin_engine(pg: URL):
    return create_engine(pg, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def _create_database(pg: URL, name: str) -> None:
    engine = _admin_engine(pg)
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def _drop_databases(pg: URL, names: list[str]) -> None:
    engine = _admin_engine(pg)
    with engine.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _drop_roles(pg: URL, names: list[str]) -> None:
    engine = _admin_engine(pg)
    with engine.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
    engine.dispose()


def _clean_redis(redis_url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
    keys = [queue, f"_kombu.binding.{queue}", *client.scan_iter(match=f"{queue}\x06*")]
    client.delete(*keys)
    client.close()


def _stop_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    _stop_groups([process], timeout)


def _stop_groups(processes: list[subprocess.Popen], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each process group at once (a Celery worker finishes its tasks), then SIGKILL
    whatever is left. Started with ``start_new_session``: a group's id is its leader's pid."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not all(_group_gone(p) for p in processes):
            time.sleep(0.2)
        if all(_group_gone(p) for p in processes):
            return


def _group_gone(process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader: a zombie still counts as a member of its group
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextmanager
def compose_stack(
    root: Path,
    *,
    executor: str = "CeleryExecutor",
    dags_folder: Path = REPO_ROOT / "dags",
    pg_url: str | None = None,
    redis_url: str | None = None,
    regulation_seconds: float = 2.0,
    sandbox_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[ComposeStack]:
    """Run the compose file's Airflow services as local processes for the ``with`` block.

    :param root: an empty directory for the Airflow home, the auth file and the process logs.
    :param executor: ``CeleryExecutor`` (the compose file's) or ``LocalExecutor`` (no worker).
    :param dags_folder: the DAG folder (the benchmark adds its floor DAG to the real one).
    :param pg_url: an administrative URL of the PostgreSQL server (default: the server of
        ``$GDPR_TEST_PG_URL``, else ``127.0.0.1:5432`` as ``postgres``).
    :param redis_url: the Redis server (default ``$GDPR_TEST_REDIS_URL`` or ``127.0.0.1:6379/0``).
    :param regulation_seconds: how long the sandbox takes to finish a Segment regulation.
    :param sandbox_args: more ``gdpr-erasure sandbox serve`` arguments (``--people 1000``).
    :param extra_env: more settings for every Airflow process (after the compose file's).
    :param workers: Celery workers to start (CeleryExecutor only), each with its own hostname,
        log and process group, all reading the stack's queue.
    """
    if workers < 1 or (workers > 1 and executor != "CeleryExecutor"):
        raise ValueError(f"workers={workers}: at least 1, and more than 1 only with the CeleryExecutor")
    pg = make_url(pg_url or _default_pg_url())
    redis_url = redis_url or os.environ.get("GDPR_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    check_services(pg.render_as_string(hide_password=False), redis_url)

    uid = secrets.token_hex(4)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "airflow" / "config").mkdir(parents=True, exist_ok=True)
    # The Dockerfile copies config/ into $AIRFLOW_HOME/config: the local settings (preload).
    shutil.copy(REPO_ROOT / "config" / "airflow_local_settings.py", root / "airflow" / "config")
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    queue = f"gdpr-stack-{uid}"
    base_env = host_environment()

    with ExitStack() as cleanup:
        try:
            sandbox = start_sandbox(
                "--regulation-seconds",
                str(regulation_seconds),
                *(sandbox_args or []),
                program=SANDBOX_PROGRAM,
                env=base_env,
                log_path=root / "logs" / "sandbox.log",
            )
        except SandboxStartError as exc:
            raise StackError(str(exc)) from exc
        cleanup.callback(sandbox.stop)
        sandbox_url = sandbox.url

        variables = stack_variables(
            uid=uid, pg=pg, redis_url=redis_url, api_url=api_url, sandbox_url=sandbox_url, root=root
        )
        databases = [variables["AIRFLOW_DB_NAME"], variables["COMPLIANCE_DB_NAME"]]
        roles = [variables["COMPLIANCE_DB_USER"], variables["COMPLIANCE_DB_OWNER"]]
        cleanup.callback(_drop_roles, pg, roles)  # after the databases: the owner owns one
        _create_database(pg, variables["AIRFLOW_DB_NAME"])  # the postgres service does this
        cleanup.callback(_drop_databases, pg, databases)
        cleanup.callback(_clean_redis, redis_url, queue)

        compose = load_compose()
        overrides = local_overrides(root=root, api_port=api_port, queue=queue, dags_folder=dags_folder)
        overrides["AIRFLOW__CORE__EXECUTOR"] = executor
        services = [s for s in AIRFLOW_SERVICES if executor == "CeleryExecutor" or s != "airflow-worker"]
        envs = {
            service: {
                **base_env,
                **service_environment(compose, service, variables),
                **overrides,
                **(extra_env or {}),
            }
            for service in (INIT_SERVICE, *services)
        }
        pg_airflow = make_url(envs[INIT_SERVICE]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        compliance = pg_airflow.set(database=variables["COMPLIANCE_DB_NAME"])
        stack = ComposeStack(
            root=root,
            uid=uid,
            api_url=api_url,
            username=variables["AIRFLOW_ADMIN_USERNAME"],
            password=variables["AIRFLOW_ADMIN_PASSWORD"],
            variables=variables,
            env=envs,
            queue=queue,
            worker_name=f"{queue}@{socket.gethostname()}" if "airflow-worker" in services else None,
            worker_names=[_worker_name(queue, n) for n in range(1, workers + 1)]
            if "airflow-worker" in services
            else [],
            store_url=compliance.render_as_string(hide_password=False),
            airflow_db_url=pg_airflow.render_as_string(hide_password=False),
            sandbox=sandbox.client,
        )
        stack.logs["sandbox"] = root / "logs" / "sandbox.log"

        _run_init(stack, compose, variables)
        cleanup.callback(lambda: _stop_groups(list(stack.processes.values())))
        for service in services:
            _start_service(stack, compose, service, variables)
        for n in range(2, len(stack.worker_names) + 1):
            _start_service(stack, compose, "airflow-worker", variables, instance=n)

        _wait_until_up(stack)
        stack.people = stack.sandbox.people_by_key()
        yield stack


def _default_pg_url() -> str:
    configured = os.environ.get("GDPR_TEST_PG_URL")
    if configured:
        return make_url(configured).set(database="postgres").render_as_string(hide_password=False)
    return DEFAULT_PG_URL


def celery_stack(root: Path, **kwargs: Any) -> contextlib.AbstractContextManager[ComposeStack]:
    """The compose file's stack as it is: Celery executor and worker."""
    return compose_stack(root, executor="CeleryExecutor", **kwargs)


def _run_init(stack: ComposeStack, compose: dict[str, Any], variables: dict[str, str]) -> None:
    service = compose["services"][INIT_SERVICE]
    if service.get("entrypoint") != "/bin/bash":
        raise StackError(f"{INIT_SERVICE} is expected to run its command with /bin/bash")
    process = _launch(stack, INIT_SERVICE, ["bash", *service_command(compose, INIT_SERVICE, variables)])
    try:
        code = process.wait(timeout=INIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        raise StackError(
            f"{INIT_SERVICE} took more than {INIT_TIMEOUT:.0f} s\n{stack.diagnostics()}"
        ) from None
    if code != 0:
        raise StackError(f"{INIT_SERVICE} failed (exit {code})\n{stack.diagnostics(60)}")


def _worker_name(queue: str, n: int) -> str:
    """The Celery hostname of worker ``n`` (1 is the compose file's one): unique per stack and worker."""
    return f"{queue}@{socket.gethostname()}" if n == 1 else f"{queue}-{n}@{socket.gethostname()}"


def _start_service(
    stack: ComposeStack, compose: dict[str, Any], service: str, variables: dict[str, str], instance: int = 1
) -> subprocess.Popen:
    """Start one service's process; ``instance`` > 1 is a further replica (``airflow-worker-2``)
    with the service's command and environment."""
    name = service if instance == 1 else f"{service}-{instance}"
    stack.env.setdefault(name, stack.env[service])
    command = [sys.executable, "-m", "airflow", *service_command(compose, service, variables)]
    command += EXTRA_ARGS.get(service, [])
    if service == "airflow-worker":
        command += ["--celery-hostname", stack.worker_names[instance - 1]]
    if instance > 1:  # the replicas share the Airflow home: a pid file each
        command += ["--pid", str(stack.root / f"{name}.pid")]
    process = _launch(stack, name, command)
    stack.processes[name] = process
    return process


def _launch(stack: ComposeStack, service: str, command: list[str]) -> subprocess.Popen:
    """Start ``command`` with the service's environment, logging to ``logs/<service>.log``."""
    log = stack.root / "logs" / f"{service}.log"
    stack.logs[service] = log
    with open(log, "w") as out:
        return subprocess.Popen(
            command,
            env=stack.env[service],
            cwd=stack.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole
        )


def _wait_until_up(stack: ComposeStack) -> None:
    scheduler_port = stack.env["airflow-scheduler"]["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"]

    def api_healthy() -> bool:
        return requests.get(f"{stack.api_url}/api/v2/monitor/health", timeout=5).ok

    def scheduler_healthy() -> bool:
        return requests.get(f"http://127.0.0.1:{scheduler_port}/health", timeout=5).ok

    def jobs_alive() -> bool:
        alive = stack.api("GET", "/jobs", params={"is_alive": True, "limit": 100}, expect=200).json()["jobs"]
        kinds = {job["job_type"] for job in alive}
        return {"SchedulerJob", "TriggererJob", "DagProcessorJob"} <= kinds

    def worker_ready() -> bool:
        # None with the LocalExecutor: the scheduler runs the tasks.
        for n, name in enumerate(stack.worker_names, start=1):
            log = stack.logs["airflow-worker" if n == 1 else f"airflow-worker-{n}"]
            if f"{name} ready." not in log.read_text(errors="replace"):
                return False
        return True

    def dag_parsed() -> bool:
        return stack.api("GET", "/dags/gdpr_erasure").status_code == 200

    deadline = time.monotonic() + START_TIMEOUT
    for what, probe in (
        ("the API server", api_healthy),
        ("the scheduler's health check", scheduler_healthy),
        ("scheduler, triggerer and DAG processor jobs", jobs_alive),
        ("the Celery workers", worker_ready),
        ("the gdpr_erasure DAG to be parsed", dag_parsed),
    ):
        stack.wait_for(what, probe, max(1.0, deadline - time.monotonic()))

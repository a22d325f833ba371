"""``gdpr-erasure deploy init``: what the compose file's ``airflow-init`` does once Airflow's database
is migrated and the Auditor role synced (docs/deployment.md).

Every step is idempotent, so the service can run again after an upgrade or a change in ``.env``:

1. ``database``: the compliance store's database on Airflow's PostgreSQL server and its two
   roles. The owner owns every object in it and runs ``db init`` (creation, migrations) and the
   grant; the pipeline's role (the ``compliance_db`` connection) owns nothing, so it cannot
   disable or drop the ledger's triggers. A store created before there were two roles is handed
   over to the owner. Skipped when ``GDPR_CREATE_COMPLIANCE_DB`` is not ``true`` (a managed
   database created by its own tooling).
2. ``connections``: ``compliance_db`` (the pipeline's role; the owner's password is in no
   connection), ``gdpr_hash_key``, ``gdpr_intake``, ``gdpr_alerts``, Stripe, Twilio and Segment
   (the real accounts, or the API sandbox at ``GDPR_SANDBOX_URL``), the ledger's witness and, once,
   its signing key. Imported into Airflow's metadata database (encrypted with the Fernet key)
   from a ``0600`` file in a private directory that is removed afterwards.
3. ``users``: the FAB Admin and, if named, the Auditor user, created once with the passwords
   from the environment; never on a command line (a process list shows those).
4. ``store``: ``db init`` as the owner, then what ``gdpr-erasure db grant`` does for the
   pipeline's role.

Settings come from the environment only (the airflow-init service's: secrets reach no other
service). A missing or wrong setting is one line, :class:`DeployError`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

STEPS = ("database", "connections", "users", "store")
# PostgreSQL identifiers we quote ourselves: nothing that needs escaping, at most 63 bytes.
NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SANDBOX_MISSING = (
    "GDPR_SANDBOX_URL is set but the API sandbox is not installed here: install gdpr-erasure[sandbox] "
    "(compose: GDPR_IMAGE_TARGET=sandbox in .env, then docker compose build)"
)

Say = Callable[[str], None]


class DeployError(Exception):
    """A setting is missing or wrong, or a step cannot be done: one line saying what to change."""


@dataclass(frozen=True)
class Settings:
    """The environment ``deploy init`` reads (docker-compose.yaml, service ``airflow-init``).

    :param env: the variables (``os.environ`` by default in :func:`run`).
    """

    env: Mapping[str, str]

    def get(self, name: str, default: str = "") -> str:
        """The value of ``name``; ``default`` when unset or blank."""
        return (self.env.get(name) or "").strip() or default

    def required(self, name: str, minimum: int = 1) -> str:
        """The value of ``name``, at least ``minimum`` characters long.

        :raises DeployError: when it is shorter.
        """
        value = self.get(name)
        if len(value) < minimum:
            raise DeployError(f"set {name} in .env (at least {minimum} characters)")
        return value


@dataclass(frozen=True)
class ComplianceDatabase:
    """Where the compliance store lives and which roles own and use it."""

    admin_url: URL  # Airflow's metadata database: its role creates the compliance database
    name: str
    owner: str
    user: str
    host: str
    port: int
    create: bool

    def url(self, role: str, password: str | None) -> URL:
        """The store's URL as ``role``."""
        return URL.create(
            "postgresql+psycopg2",
            username=role,
            password=password or None,
            host=self.host,
            port=self.port,
            database=self.name,
        )


def compliance_database(settings: Settings) -> ComplianceDatabase:
    """Read and check the compliance database's settings before anything is changed.

    :param settings: the environment.
    :raises DeployError: a name is missing or not a plain identifier, or the owner is the
        pipeline's role.
    """
    name = settings.required("COMPLIANCE_DB_NAME")
    owner, user = settings.required("COMPLIANCE_DB_OWNER"), settings.required("COMPLIANCE_DB_USER")
    for variable, value in (
        ("COMPLIANCE_DB_NAME", name),
        ("COMPLIANCE_DB_OWNER", owner),
        ("COMPLIANCE_DB_USER", user),
    ):
        if not NAME.fullmatch(value):
            raise DeployError(
                f"{variable}={value!r}: use lower-case letters, digits and _ only "
                "(at most 63, not a digit first)"
            )
    if owner == user:
        raise DeployError(
            "COMPLIANCE_DB_OWNER and COMPLIANCE_DB_USER must be two roles: "
            "the pipeline's role must not own the compliance store"
        )
    try:
        meta = make_url(settings.required("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"))
    except ArgumentError as exc:
        raise DeployError(f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not a database URL: {exc}") from None
    if meta.get_backend_name() != "postgresql":
        raise DeployError(
            f"Airflow's database is {meta.get_backend_name()}: the compliance database is created on "
            "Airflow's PostgreSQL server (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
        )
    port = settings.get("COMPLIANCE_DB_PORT", str(meta.port or 5432))
    if not port.isdigit():
        raise DeployError(f"COMPLIANCE_DB_PORT={port!r}: a port number")
    return ComplianceDatabase(
        admin_url=meta,
        name=name,
        owner=owner,
        user=user,
        host=settings.get("COMPLIANCE_DB_HOST", meta.host or "localhost"),
        port=int(port),
        create=settings.get("GDPR_CREATE_COMPLIANCE_DB", "true").lower() == "true",
    )


# --- 1. the database and its roles -----------------------------------------------------------------


def ensure_database(db: ComplianceDatabase, settings: Settings, say: Say = print) -> list[str]:
    """Create the two roles and the database, or bring them back to that shape; returns what it
    changed (nothing on a second run).

    :param db: the database (:func:`compliance_database`).
    :param settings: the environment (the roles' passwords, read only to create a role).
    :param say: where progress lines go.
    """
    if not db.create:
        say(
            f"deploy init: GDPR_CREATE_COMPLIANCE_DB is not true: database {db.name} "
            "and its roles left as they are"
        )
        return []
    changes: list[str] = []
    admin = create_engine(db.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # A role's password is needed only to create it; both are checked before either is.
            secrets = ((db.owner, "COMPLIANCE_DB_OWNER_PASSWORD"), (db.user, "COMPLIANCE_DB_PASSWORD"))
            to_create = {
                role: settings.required(secret, 16)
                for role, secret in secrets
                if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": role}).first()
                is None
            }
            for role, password in to_create.items():
                conn.execute(text(f'CREATE ROLE "{role}" LOGIN PASSWORD :p'), {"p": password})
                changes.append(f"created role {role}")
            owner = conn.execute(
                text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :n"), {"n": db.name}
            ).scalar()
            if owner is None:
                conn.execute(text(f'CREATE DATABASE "{db.name}" OWNER "{db.owner}"'))
                conn.execute(text(f'REVOKE ALL ON DATABASE "{db.name}" FROM PUBLIC'))
                changes.append(f"created database {db.name}")
            elif owner != db.owner:
                conn.execute(text(f'ALTER DATABASE "{db.name}" OWNER TO "{db.owner}"'))
                changes.append(f"database {db.name} now belongs to {db.owner} (was {owner})")
    finally:
        admin.dispose()
    # A store created before there were two roles belongs to the pipeline's role: hand it over.
    admin = create_engine(db.admin_url.set(database=db.name), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            owned = conn.execute(
                text(
                    "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.rolname = :u"
                    " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
                ),
                {"u": db.user},
            ).scalar()
            if owned:
                conn.execute(text(f'REASSIGN OWNED BY "{db.user}" TO "{db.owner}"'))
                changes.append(f"the compliance store's objects now belong to {db.owner} (were {db.user}'s)")
    finally:
        admin.dispose()
    for change in changes:
        say(f"deploy init: {change}")
    return changes


# --- 2. connections --------------------------------------------------------------------------------


def connection(conn_type: str, extra: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """One connection in ``airflow connections import`` form; empty fields and extras left out.

    :param conn_type: the connection type.
    :param extra: the extras (stored as a JSON string).
    :param fields: ``host``, ``login``, ``password``, ``port``, ``schema``.
    """
    conn = {"conn_type": conn_type, **{k: v for k, v in fields.items() if v not in (None, "")}}
    kept = {k: v for k, v in (extra or {}).items() if v not in (None, "")}
    if kept:
        conn["extra"] = json.dumps(kept)
    return conn


def build_connections(
    db: ComplianceDatabase, settings: Settings, say: Say = print
) -> dict[str, dict[str, Any]]:
    """Every connection airflow-init writes, checked before any is written (the ledger's signing
    key is added by :func:`add_ledger_key`).

    :param db: the compliance database.
    :param settings: the environment.
    :param say: where progress lines and warnings go.
    """
    connections = {
        # The pipeline's role: it owns nothing in the store. The owner is in no connection.
        "compliance_db": connection(
            "postgres",
            host=db.host,
            port=db.port,
            schema=db.name,
            login=db.user,
            password=settings.get("COMPLIANCE_DB_PASSWORD"),
        ),
        "gdpr_hash_key": connection(
            "generic",
            login=settings.get("GDPR_HASH_KEY_ID", "k1"),
            password=settings.required("GDPR_HASH_KEY", 32),
        ),
    }
    if settings.get("GDPR_INTAKE_SIGNING_SECRET"):
        connections["gdpr_intake"] = connection(
            "generic",
            password=settings.required("GDPR_INTAKE_SIGNING_SECRET", 32),
            extra={
                "controller_id": settings.get("GDPR_INTAKE_CONTROLLER_ID"),
                "url": settings.get("AIRFLOW__API__BASE_URL").rstrip("/") + "/gdpr",
            },
        )
    if settings.get("GDPR_ALERTS_WEBHOOK_URL"):
        connections["gdpr_alerts"] = connection("http", host=settings.get("GDPR_ALERTS_WEBHOOK_URL"))
    sandbox_url = settings.get("GDPR_SANDBOX_URL").rstrip("/")
    if sandbox_url:
        connections.update(sandbox_provider_connections(sandbox_url))
        say(f"deploy init: Stripe, Twilio and Segment point at the SANDBOX {sandbox_url}")
    else:
        connections.update(provider_connections(settings, say))
    # The ledger's tree heads (docs/ledger.md) are published to a write-once witness.
    connections["gdpr_ledger_witness"] = connection(
        "generic",
        extra={
            "uri": settings.get("GDPR_LEDGER_WITNESS_URI", "file:///opt/airflow/witness"),
            "conn_id": settings.get("GDPR_LEDGER_WITNESS_CONN_ID"),
        },
    )
    return connections


def provider_connections(settings: Settings, say: Say = print) -> dict[str, dict[str, Any]]:
    """Stripe, Twilio and Segment from the real accounts' settings. A provider whose secret is
    empty is left as it is (set in the UI or a secrets backend), with a warning.

    :param settings: the environment.
    :param say: where the warnings go.
    """
    builders: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "stripe_default": (
            "STRIPE_SECRET_KEY",
            lambda: connection(
                "stripe",
                password=settings.get("STRIPE_SECRET_KEY"),
                extra={
                    "account_id": settings.required("STRIPE_ACCOUNT_ID"),
                    "redaction_method": settings.get("STRIPE_REDACTION_METHOD", "delete"),
                    "preview_api_version": settings.get("STRIPE_PREVIEW_API_VERSION"),
                },
            ),
        ),
        "twilio_default": (
            "TWILIO_API_KEY_SECRET",
            lambda: connection(
                "twilio",
                login=settings.required("TWILIO_API_KEY_SID"),
                password=settings.get("TWILIO_API_KEY_SECRET"),
                extra={
                    "account_sid": settings.required("TWILIO_ACCOUNT_SID"),
                    "memory_store_id": settings.required("TWILIO_MEMORY_STORE_ID"),
                },
            ),
        ),
        "segment_default": (
            "SEGMENT_PUBLIC_API_TOKEN",
            lambda: connection(
                "segment",
                host=settings.get("SEGMENT_PUBLIC_API_URL", "https://api.segmentapis.com"),
                password=settings.get("SEGMENT_PUBLIC_API_TOKEN"),
                extra={
                    "space_id": settings.required("SEGMENT_SPACE_ID"),
                    "profile_api_token": settings.required("SEGMENT_PROFILE_API_TOKEN"),
                    "profile_api_url": settings.get(
                        "SEGMENT_PROFILE_API_URL", "https://profiles.segment.com"
                    ),
                    "email_id_type": settings.get("SEGMENT_EMAIL_ID_TYPE", "email"),
                    "phone_id_type": settings.get("SEGMENT_PHONE_ID_TYPE", "phone"),
                    "check_user_id": settings.required("SEGMENT_CHECK_USER_ID"),
                },
            ),
        ),
    }
    connections = {}
    for conn_id, (secret, build) in builders.items():
        if settings.get(secret):
            connections[conn_id] = build()
        else:
            say(f"deploy init: WARNING: {secret} is empty: {conn_id} left as it is (UI or secrets backend)")
    return connections


def sandbox_provider_connections(sandbox_url: str) -> dict[str, dict[str, Any]]:
    """Stripe, Twilio and Segment pointing at the API sandbox (the compose file's ``sandbox``
    profile). The sandbox is an extra, imported only here.

    :param sandbox_url: its base URL as the Airflow components reach it.
    :raises DeployError: the sandbox is not installed or does not answer.
    """
    try:
        from sandbox.connections import sandbox_connections
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "sandbox":
            raise
        raise DeployError(SANDBOX_MISSING) from None
    try:
        with urllib.request.urlopen(f"{sandbox_url}/_sandbox/people", timeout=30) as answer:
            accounts = json.load(answer)["accounts"]
    except (OSError, ValueError, KeyError) as exc:  # URLError is an OSError
        raise DeployError(
            f"cannot read the sandbox's accounts at {sandbox_url}/_sandbox/people: {exc}"
        ) from None
    return {
        conn_id: connection(conn.pop("conn_type"), extra=conn.pop("extra", None), **conn)
        for conn_id, conn in sandbox_connections(sandbox_url, accounts).items()
    }


def add_ledger_key(connections: dict[str, dict[str, Any]], settings: Settings, say: Say = print) -> bool:
    """Add a new Ed25519 signing key for the ledger's tree heads unless Airflow holds one: it is
    generated once and never replaced (auditors pin its public half). True if one was added.

    :param connections: the connections to import; the key is added to them.
    :param settings: the environment (``GDPR_LEDGER_KEY_ID``).
    :param say: where progress lines go.
    """
    held = subprocess.run(
        ["airflow", "connections", "get", "gdpr_ledger_key"], capture_output=True, check=False
    ).returncode
    if held == 0:
        return False
    from gdpr_erasure.receipts import generate_signing_key

    key, pem = generate_signing_key(settings.get("GDPR_LEDGER_KEY_ID", "ledger-1"))
    connections["gdpr_ledger_key"] = connection("generic", login=key.key_id, password=pem)
    say(
        "deploy init: created the ledger signing key gdpr_ledger_key; its public key "
        "(for auditors): gdpr-erasure audit public-key"
    )
    return True


def import_connections(connections: Mapping[str, Mapping[str, Any]]) -> None:
    """``airflow connections import --overwrite``: into the metadata database, encrypted with the
    Fernet key. The file is ``0600`` in a private directory, removed afterwards.

    :param connections: by connection id.
    """
    workdir = tempfile.mkdtemp(prefix="deploy-init-")
    try:
        path = os.path.join(workdir, "connections.json")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            json.dump(connections, out)
        subprocess.run(["airflow", "connections", "import", "--overwrite", path], check=True)
    finally:
        shutil.rmtree(workdir)


# --- 3. users --------------------------------------------------------------------------------------


User = tuple[str, str, str, str]  # username, initial password, role, email


def wanted_users(settings: Settings) -> list[User]:
    """The FAB Admin user and, when ``AIRFLOW_AUDITOR_USERNAME`` is set, the Auditor user.

    :param settings: the environment (their passwords: at least 12 characters).
    """
    users = [
        (
            settings.get("AIRFLOW_ADMIN_USERNAME", "admin"),
            "AIRFLOW_ADMIN_PASSWORD",
            "Admin",
            settings.get("AIRFLOW_ADMIN_EMAIL"),
        )
    ]
    if settings.get("AIRFLOW_AUDITOR_USERNAME"):
        users.append(
            (
                settings.get("AIRFLOW_AUDITOR_USERNAME"),
                "AIRFLOW_AUDITOR_PASSWORD",
                "Auditor",
                settings.get("AIRFLOW_AUDITOR_EMAIL"),
            )
        )
    return [(name, settings.required(secret, 12), role, email) for name, secret, role, email in users]


def ensure_users(users: Iterable[User], say: Say = print) -> list[str]:
    """Create each user unless it exists; returns the users it created. A user is created once
    with the password from the environment (later changes: the UI, or ``airflow users
    reset-password``), through FAB's security manager, never a command line.

    :param users: from :func:`wanted_users`.
    :param say: where progress lines go.
    """
    from gdpr_erasure.auditor.roles import RolesError, ensure_user

    created = []
    for username, password, role, email in users:
        try:
            if ensure_user(username, password, role, email):
                created.append(username)
                say(f"deploy init: created the {role} user {username}")
        except RolesError as exc:
            raise DeployError(str(exc)) from None
    return created


# --- 4. the store ----------------------------------------------------------------------------------


def init_store(db: ComplianceDatabase, settings: Settings, say: Say = print) -> int | None:
    """``db init`` and its migrations as the owner, then the pipeline role's grant (what
    ``gdpr-erasure db grant`` does). Returns the schema version.

    :param db: the compliance database.
    :param settings: the environment (the owner's password).
    :param say: where progress lines go.
    """
    from gdpr_erasure.store import ComplianceStore
    from gdpr_erasure.store.privileges import PrivilegeError, grant_pipeline_privileges

    owner_url = db.url(db.owner, settings.get("COMPLIANCE_DB_OWNER_PASSWORD"))
    store = ComplianceStore.from_url(owner_url.render_as_string(hide_password=False))
    try:
        store.init_db()
        grant_pipeline_privileges(store.engine, db.user)
        version = store.schema_version()
    except PrivilegeError as exc:
        raise DeployError(str(exc)) from None
    finally:
        store.dispose()
    say(
        f"deploy init: compliance store ready (schema version {version}, owner {db.owner}); "
        f"{db.user} may run the pipeline and owns nothing"
    )
    return version


# --- all of it -------------------------------------------------------------------------------------


def run(env: Mapping[str, str] | None = None, steps: Iterable[str] = STEPS, say: Say = print) -> None:
    """Every step asked for, in the order airflow-init needs them. Every setting they read is
    checked before the first change (the roles' passwords only when a role is to be created).

    :param env: the environment (default ``os.environ``).
    :param steps: a subset of :data:`STEPS`.
    :param say: where progress lines go.
    :raises DeployError: one line; nothing after the failing step ran.
    """
    settings = Settings(os.environ if env is None else env)
    wanted = set(steps)
    unknown = wanted - set(STEPS)
    if unknown:
        raise DeployError(f"unknown step(s) {', '.join(sorted(unknown))}: choose from {', '.join(STEPS)}")
    db = compliance_database(settings)
    connections = build_connections(db, settings, say) if "connections" in wanted else None
    users = wanted_users(settings) if "users" in wanted else []
    if "database" in wanted:
        ensure_database(db, settings, say)
    if connections is not None:
        add_ledger_key(connections, settings, say)
    if users:
        ensure_users(users, say)
    if connections is not None:
        import_connections(connections)
    if "store" in wanted:
        init_store(db, settings, say)

"""Tables of the compliance store: one schema for SQLite (embedded default) and PostgreSQL.

* ``erasure_requests`` - the intake table: one row per request, its identifiers while they are
  needed, and where it is in its life (:mod:`gdpr_erasure.store.status`).
* ``erasure_steps`` - what each step did for a request (resolved ids, counts, provider ids), and
  where it ran: the Airflow task instance and try that last worked on it, to find its log.
  One row per (request, step) so parallel erasure tasks never overwrite each other's results.
* ``legal_holds`` - legal holds: each names a request, or one identifier by its keyed hash
  (never in clear), that must not be erased while the hold is active (:mod:`gdpr_erasure.holds`).
* ``audit_log`` - the append-only, hash-chained ledger. The database itself rejects UPDATE and
  DELETE (and TRUNCATE on PostgreSQL) through triggers, so not even a buggy or hostile caller
  with the application's credentials can rewrite history through SQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from gdpr_erasure.store.status import RequestStatus, StepStatus
from gdpr_erasure.store.types import UtcDateTime

#: 2: ``erasure_requests.not_before`` and the ``deferred`` status (a provider's quota is spent).
#: 3: ``ledger_heads``. 4: the erasure steps renamed to one verb (``erase_*``). 5: where each
#: step ran (task instance and try) and when, and into which batch, a request was last claimed.
#: 6: ``legal_holds`` and the ``on_hold`` status. 7: the ``completed_with_exemptions`` status
#: (``status`` 32 characters wide) and review entries in the ledger (``audit_log.request_id`` 100
#: wide, for ``<request id>/review/<n>``).
#: ``ComplianceStore.init_db`` migrates a store of any earlier version in place.
SCHEMA_VERSION = 7

metadata = MetaData()


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


erasure_requests = Table(
    "erasure_requests",
    metadata,
    Column("id", String(64), primary_key=True, comment="caller's idempotency id or a generated one"),
    # Identifiers: raw while the request is being worked, keyed hashes afterwards.
    Column("email", Text),
    Column("phone", String(32)),
    Column("stripe_customer_id", String(255)),
    Column("user_id", String(255)),
    Column("identifiers_hash", String(64), comment="HMAC-SHA256 of the normalised identifiers"),
    Column("source", String(32), nullable=False, default="api"),
    # 32 since schema 7 (completed_with_exemptions has 25 characters).
    Column("status", String(32), nullable=False, default=RequestStatus.PENDING.value),
    Column("attempts", Integer, nullable=False, default=0, comment="times claimed by a run"),
    Column("failures", Integer, nullable=False, default=0, comment="attempts that ended failed"),
    Column("claimed_by", String(250), comment="run that holds the lease"),
    Column("lease_expires_at", UtcDateTime()),
    Column("last_error", Text, comment="reason of the last failure; never contains identifiers"),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("completed_at", UtcDateTime()),
    Column("pii_erased_at", UtcDateTime()),
    # Added in schema 2, last so that a migrated table (ALTER TABLE ADD COLUMN) matches a new one.
    Column("not_before", UtcDateTime(), comment="not claimable before this time (a provider's quota)"),
    # Added in schema 5, last for the same reason; NULL for claims made before it.
    Column("claimed_at", UtcDateTime(), comment="time of the latest claim"),
    Column("claimed_map_index", Integer, comment="map index of the batch the latest claim put it in"),
    CheckConstraint(_in("status", RequestStatus), name="ck_erasure_requests_status"),
    CheckConstraint("attempts >= 0 AND failures >= 0", name="ck_erasure_requests_counts"),
)
Index("ix_erasure_requests_status_received", erasure_requests.c.status, erasure_requests.c.received_at)

erasure_steps = Table(
    "erasure_steps",
    metadata,
    Column("request_id", String(64), ForeignKey("erasure_requests.id"), primary_key=True),
    Column("step", String(40), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("result", Text, nullable=False, default="{}", comment="JSON; pseudonymous ids and counts only"),
    Column("attempts", Integer, nullable=False, default=1),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Added in schema 5: the Airflow task instance and try that last worked on the step, where its
    # log is. NULL for rows written before, or outside a task; rewrites at closing (tags and keyed
    # hashes replacing ids) leave them as they are. Airflow's ids are at most 250 characters.
    Column("dag_id", String(250)),
    Column("task_id", String(250), comment="the full task id, group prefix included"),
    Column("run_id", String(250)),
    Column("map_index", Integer, comment="-1 for a task that is not mapped"),
    Column("try_number", Integer),
    CheckConstraint(_in("status", StepStatus), name="ck_erasure_steps_status"),
)

#: What a legal hold may name: a request, or one identifier of a person by its keyed hash.
HOLD_TARGET_TYPES = ("request", "email", "phone")

# Legal holds (schema 6). A hold on a person holds the keyed hash of one identifier, the same
# per-identifier hash the audit records carry as ``subject.identifier_hashes``, never the value.
# Rows are never deleted: releasing one sets ``released_at``; placing and releasing are also
# entries in the audit ledger, which ``audit verify`` matches against these rows.
legal_holds = Table(
    "legal_holds",
    metadata,
    Column("hold_id", String(32), primary_key=True, comment="hold-<random hex>"),
    Column("target_type", String(16), nullable=False, comment="request, email or phone"),
    Column("target", String(64), nullable=False, comment="a request id, or an identifier's keyed hash"),
    Column("hash_key_id", String(64), comment="the hash key of an identifier's hash (NULL for a request)"),
    Column("reason", Text, nullable=False, comment="free text from ops; refused if it looks like PII"),
    Column("placed_at", UtcDateTime(), nullable=False),
    Column("placed_by", String(128), nullable=False),
    Column("until", Date(), comment="last day the hold is active (UTC); NULL: until released"),
    Column("released_at", UtcDateTime()),
    Column("released_by", String(128)),
    Column("release_reason", Text),
    CheckConstraint(_in("target_type", HOLD_TARGET_TYPES), name="ck_legal_holds_target_type"),
)
Index("ix_legal_holds_target", legal_holds.c.target)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    # One record per request, enforced by the database: a rerun cannot write a second one. A hold
    # entry (schema 6) keeps its key here, "<hold id>/placed" or "/released": no request id has a '/'.
    # A review entry (schema 7: what the erasure policy kept, checked again) keeps
    # "<request id>/review/<attempt>", hence 100 characters (request ids have at most 64).
    Column("request_id", String(100), nullable=False, unique=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("record", Text, nullable=False, comment="canonical JSON of the record"),
    # UNIQUE prev_hash: the chain cannot fork, two records cannot claim the same predecessor.
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("record_hash", String(64), nullable=False, unique=True),
)

# Signed tree heads of the ledger's Merkle tree (RFC 9162): one per batch that appended records.
# Append-only like the ledger; the heads that matter against the database's owner are the copies
# published to the witness (gdpr_erasure.ledger.witness).
ledger_heads = Table(
    "ledger_heads",
    metadata,
    Column("tree_size", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("root_hash", String(64), nullable=False),
    Column("signed_at", UtcDateTime(), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("head", Text, nullable=False, comment="canonical JSON of the signed head, signature included"),
    # The tree's compact range at this size (hex subtree roots, largest first): the next head
    # extends it with the records appended since, instead of hashing the whole ledger again.
    Column("peaks", Text, nullable=False, comment="JSON list of hex subtree roots"),
)

#: Tables the database itself keeps append-only (triggers) and the pipeline's role may only
#: INSERT into and SELECT from.
APPEND_ONLY_TABLES = ("audit_log", "ledger_heads")

store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} rejected'); END"""
    for table in APPEND_ONLY_TABLES
    for verb in ("UPDATE", "DELETE")
]

# '%%' because the driver treats '%' as a parameter marker; PostgreSQL receives '%'.
POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION gdpr_audit_log_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '%% is append-only: %% rejected', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$""",
    *(
        statement
        for table in APPEND_ONLY_TABLES
        for statement in (
            f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}",
            f"""CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION gdpr_audit_log_append_only()""",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION gdpr_audit_log_append_only()""",
        )
    ),
]

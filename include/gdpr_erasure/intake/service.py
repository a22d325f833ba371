"""What a valid intake call does to the compliance store (blocking calls: run in a thread).

Idempotency: the caller's request id is the primary key (INSERT ... ON CONFLICT DO NOTHING).
The same id with the same identifiers answers the stored request again, whatever its status.
The same id with *different* identifiers is a 409 ``request_id_conflict``: the caller reused an id
by mistake, and neither request must be silently dropped. The answer never says what the stored
identifiers are. Once a request is completed its identifiers are replaced by a keyed hash, so a
repeat is then compared by hashing the new identifiers with the ``gdpr_hash_key`` key.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any

from gdpr_erasure.hashing import MissingHashKey, identifiers_hash, load_hash_key
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.intake.errors import IntakeError
from gdpr_erasure.intake.models import Submission
from gdpr_erasure.ledger.entries import request_entries
from gdpr_erasure.store import ComplianceStore, ErasureRequest, RequestNotFound, RequestStatus

log = logging.getLogger(__name__)


class IntakeService:
    """The intake's use of the store.

    :param store_factory: opens the store on first use (a bad URL then answers 503, and importing
        the plugin never touches a database).
    :param hash_key_loader: the identifier hash key (see :mod:`gdpr_erasure.hashing`).
    """

    def __init__(
        self,
        store_factory: Callable[[], ComplianceStore],
        hash_key_loader: Callable = load_hash_key,
    ) -> None:
        self._store_factory = store_factory
        self._hash_key_loader = hash_key_loader
        self._store: ComplianceStore | None = None
        self._lock = threading.Lock()
        self._sqlite_writes = threading.Lock()

    @classmethod
    def for_url(cls, db_url: str | None) -> IntakeService:
        return cls(lambda: ComplianceStore.from_url(db_url))

    @property
    def store(self) -> ComplianceStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    try:
                        self._store = self._store_factory()
                    except Exception as exc:
                        log.error("intake: cannot open the compliance store (%s)", type(exc).__name__)
                        raise IntakeError("store_unavailable") from None
        return self._store

    def dispose(self) -> None:
        if self._store is not None:
            self._store.dispose()

    def submit(self, submission: Submission) -> tuple[ErasureRequest, bool]:
        """Store the request unless its id exists; return it and whether it was created now."""
        store = self.store
        try:
            if store.dialect == "sqlite":
                # SQLite takes one writer at a time (BEGIN IMMEDIATE); threads that queue on the
                # database lock wait in its busy handler, which sleeps in steps of up to 100 ms.
                # Queueing on a lock of ours instead keeps latency flat.
                with self._sqlite_writes:
                    result = store.submit(
                        submission.request_id, submission.identifiers, source=submission.source
                    )
            else:
                result = store.submit(submission.request_id, submission.identifiers, source=submission.source)
        except IntakeError:
            raise
        except Exception as exc:
            # Driver messages can quote the row (PostgreSQL: "Failing row contains ..."): log the
            # class only.
            log.error("intake: store error on submit (%s)", type(exc).__name__)
            raise IntakeError("store_unavailable") from None
        if not result.created and not self._same_subject(result.request, submission.identifiers):
            raise IntakeError(
                "request_id_conflict",
                "this request id already names a request for different identifiers; use a new id",
            )
        return result.request, result.created

    def get(self, request_id: str) -> ErasureRequest:
        try:
            return self.store.get(request_id)
        except RequestNotFound:
            raise IntakeError("request_not_found") from None
        except IntakeError:
            raise
        except Exception as exc:
            log.error("intake: store error on get (%s)", type(exc).__name__)
            raise IntakeError("store_unavailable") from None

    def kept(self, request: ErasureRequest) -> list[dict[str, Any]]:
        """What the erasure policy keeps of ``request``, as its latest audit entry lists it (keyed
        ids only). Read only for a request closed once that is not plainly ``completed``: done
        with exemptions, or back in the pipeline for their review; every other answer costs no
        more than before."""
        if request.completed_at is None or request.status is RequestStatus.COMPLETED:
            return []
        try:
            entries = request_entries(self.store, request.id, request.attempts)
        except IntakeError:
            raise
        except Exception as exc:
            log.error("intake: store error reading the ledger (%s)", type(exc).__name__)
            raise IntakeError("store_unavailable") from None
        return entries.kept if entries is not None else []

    def _same_subject(self, stored: ErasureRequest, given: SubjectIdentifiers) -> bool:
        if stored.identifiers is not None:
            return stored.identifiers == given  # normalised values; email spelling not compared
        if stored.identifiers_hash is None:
            return False
        try:
            key = self._hash_key_loader()
        except Exception as exc:  # MissingHashKey (its message says what to fix), or no connection
            reason = str(exc) if isinstance(exc, MissingHashKey) else type(exc).__name__
            log.error(
                "intake: identifier hash key unavailable (%s); cannot compare a repeat of %s",
                reason,
                stored.id,
            )
            raise IntakeError("hash_key_unavailable") from None
        return hmac.compare_digest(identifiers_hash(key, given), stored.identifiers_hash)

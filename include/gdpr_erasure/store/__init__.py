"""The compliance store (intake table, step results, append-only audit ledger)."""

from gdpr_erasure.store.chain import AuditEntry, ChainReport
from gdpr_erasure.store.status import RequestStatus, StepStatus
from gdpr_erasure.store.store import (
    AuditRecordExists,
    ComplianceStore,
    ErasureRequest,
    HoldNotActive,
    HoldNotFound,
    InvalidTransition,
    LegalHold,
    RequestNotFound,
    SchemaTooNew,
    StepResult,
    StoreError,
    StoreMissing,
    SubmitResult,
    TaskTry,
)

__all__ = [
    "AuditEntry",
    "AuditRecordExists",
    "ChainReport",
    "ComplianceStore",
    "ErasureRequest",
    "HoldNotActive",
    "HoldNotFound",
    "InvalidTransition",
    "LegalHold",
    "RequestNotFound",
    "RequestStatus",
    "SchemaTooNew",
    "StepResult",
    "StepStatus",
    "StoreError",
    "StoreMissing",
    "SubmitResult",
    "TaskTry",
]

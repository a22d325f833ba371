"""Publish signed tree heads where the compliance database's owner cannot rewrite them.

The witness is a location given by a URI: a directory (``file:///var/lib/gdpr/witness`` or a
plain path) or object storage through Airflow's :class:`~airflow.sdk.ObjectStoragePath`
(``s3://bucket/prefix``, ``gs://...``, with the connection named in the Airflow connection
``gdpr_ledger_witness``: extra ``uri`` and optional ``conn_id``). Each head is one object,
``heads/<tree_size, 20 digits>.json``, written once and never replaced: a second, different head
for the same size is a fork and is refused. Make the location write-once for the pipeline
(object lock / WORM, docs/ledger.md) so that not even the pipeline's own credentials can remove
a head.
"""

from __future__ import annotations

from typing import Any

from gdpr_erasure.ledger.heads import LedgerError, TreeHead

WITNESS_CONN_ID = "gdpr_ledger_witness"


class Witness:
    """:param uri: where the heads live. :param conn_id: Airflow connection of the storage."""

    def __init__(self, uri: str, conn_id: str | None = None) -> None:
        from airflow.sdk import ObjectStoragePath

        if "://" not in uri:
            uri = f"file://{uri}"
        self.uri = uri
        self.root = ObjectStoragePath(uri, conn_id=conn_id) if conn_id else ObjectStoragePath(uri)

    def _path(self, tree_size: int):
        return self.root / "heads" / f"{tree_size:020d}.json"

    def publish(self, head: TreeHead) -> bool:
        """Write the head once; True if written now, False if the same head was already there."""
        path = self._path(head.tree_size)
        if path.exists():
            existing = TreeHead.from_json(path.read_text())
            if existing != head:
                raise LedgerError(
                    f"the witness already holds a different head for size {head.tree_size}: the log forked"
                )
            return False
        (self.root / "heads").mkdir(parents=True, exist_ok=True)
        path.write_text(head.to_json() + "\n")
        return True

    def heads(self) -> list[TreeHead]:
        """Every published head, smallest first."""
        folder = self.root / "heads"
        if not folder.exists():
            return []
        found = [TreeHead.from_json(p.read_text()) for p in folder.iterdir() if p.name.endswith(".json")]
        return sorted(found, key=lambda h: h.tree_size)


def witness_from_connection(conn_id: str = WITNESS_CONN_ID) -> Witness | None:
    """The witness named by the Airflow connection (extra ``uri``, or ``host``), or None."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    extra: dict[str, Any] = conn.extra_dejson or {}
    uri = extra.get("uri") or conn.host
    if not uri:
        raise LedgerError(f"connection {conn_id} names no witness: set its extra uri (s3://..., file://...)")
    return Witness(uri, extra.get("conn_id"))

"""``gdpr-erasure requests list`` on both backends: every status fits its column, the longest
(``completed_with_exemptions``) included, so the columns after it stay aligned."""

from __future__ import annotations

from datetime import UTC, datetime

from gdpr_erasure.cli import main as cli
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.store import RequestStatus


def test_the_status_column_fits_completed_with_exemptions(store, store_url, capsys):
    review = datetime(2027, 1, 28, 9, 30, tzinfo=UTC)
    store.submit("req-kept", SubjectIdentifiers.parse(email="kept@example.com"))
    store.submit("req-new", SubjectIdentifiers.parse(email="new@example.com"))
    assert store.claim(1, "run-1", request_ids=["req-kept"]) == ["req-kept"]
    store.transition("req-kept", RequestStatus.COMPLETED_WITH_EXEMPTIONS, not_before=review)
    longest = max(len(s.value) for s in RequestStatus)
    assert longest == len("completed_with_exemptions")

    assert cli(["requests", "--db-url", store_url, "list"]) == 0
    header, *rows, total = capsys.readouterr().out.splitlines()
    assert total == "2 request(s)"
    lines = {row.split()[0]: row for row in rows}
    kept, new = lines["req-kept"], lines["req-new"]
    # The status is whole, and the attempts column starts where the header's does on every line.
    assert kept.split()[1] == "completed_with_exemptions" and new.split()[1] == "pending"
    column = header.index("attempts")
    assert kept[column - 1] == new[column - 1] == " "
    assert kept[: column + len("attempts")].endswith("1") and new[: column + len("attempts")].endswith("0")
    # Its review date is when a run takes it again.
    assert kept.index("2027-01-28 09:30:00") == header.index("not before (UTC)")

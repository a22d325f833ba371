"""Hold entries where auditors read the ledger: the auditor page's records list shows each as a
legal hold (linked to the held request, or the identifier's type and a hash prefix), never as a
request's erasure; and the command line lists holds without any identifier."""

from __future__ import annotations

import io
import json

from gdpr_erasure.auditor.pages import records_table
from gdpr_erasure.cli import main as cli
from gdpr_erasure.holds import place_hold
from gdpr_erasure.identifiers import SubjectIdentifiers
from gdpr_erasure.ledger.export import export_row

EMAIL = "katherine.johnson@example.org"


def test_the_auditor_page_lists_hold_entries_as_holds(store, key):
    store.submit("req-1", SubjectIdentifiers.parse(email=EMAIL))
    on_request = place_hold(store, reason="LEGAL-1 <b>dispute</b>", placed_by="ops", request_id="req-1").hold
    on_person = place_hold(store, reason="LEGAL-2", placed_by="ops", email=EMAIL, key=key).hold
    html = records_table([export_row(e) for e in store.audit_entries()])
    assert html.count('<tr class="hold"') == 2
    assert f"Legal hold <code>{on_request.hold_id}</code> placed on request " in html
    assert '<a href="request/req-1">req-1</a>' in html
    assert "LEGAL-1 &lt;b&gt;dispute&lt;/b&gt;" in html  # ops' text is escaped
    assert f"placed on email <code>#{on_person.target[:12]}</code>" in html
    assert on_person.target not in html and "katherine" not in html
    assert f"request/{on_request.hold_id}" not in html  # a hold is no request to open


def test_hold_commands_take_identifiers_only_from_stdin_and_list_no_identifier(
    store, key, monkeypatch, capsys
):
    url = store.engine.url.render_as_string(hide_password=False)
    store.submit("req-1", SubjectIdentifiers.parse(email=EMAIL))
    # An identifier in argv is refused before anything happens: it would stay in the shell history.
    assert cli(["hold", "--db-url", url, "place", "--email", EMAIL, "--reason", "LEGAL-3"]) == 2
    assert "do not pass the email as an argument" in capsys.readouterr().err
    assert cli(["hold", "--db-url", url, "place", "--reason", "LEGAL-3"]) == 2
    assert (
        capsys.readouterr().err.strip() == "hold place: name exactly one of --request ID, --email or --phone"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("someone@example.org\n"))
    assert cli(["hold", "--db-url", url, "place", "--email", "--reason", "asked by someone@example.org"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "looks like it contains an email address" in err
    assert "someone@" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO(EMAIL + "\n"))
    assert (
        cli(["hold", "--db-url", url, "place", "--email", "--reason", "LEGAL-3", "--until", "2999-01-31"])
        == 0
    )
    out = capsys.readouterr()
    hold_id = out.out.strip()
    assert "1 request(s) now on_hold" in out.err
    assert (
        cli(
            [
                "hold",
                "--db-url",
                url,
                "place",
                "--request",
                "req-1",
                "--reason",
                "LEGAL-4",
                "--until",
                "1999-01-01",
            ]
        )
        == 2
    )
    assert "in the past" in capsys.readouterr().err

    assert cli(["hold", "list", "--db-url", url, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["hold_id"] == hold_id and listed["state"] == "active" and listed["holding"] == 1
    assert (listed["target_type"], listed["request_id"], len(listed["hash_prefix"])) == ("email", None, 12)
    assert listed["until"] == "2999-01-31"
    assert cli(["hold", "list", "--db-url", url]) == 0
    table = capsys.readouterr().out
    assert f"email #{listed['hash_prefix']}" in table and "katherine" not in table
    assert store.get_hold(hold_id).target not in table

    assert cli(["hold", "--db-url", url, "release", hold_id, "--reason", "LEGAL-3 closed"]) == 0
    assert "1 request(s) back to pending: req-1" in capsys.readouterr().out
    assert cli(["hold", "--db-url", url, "release", hold_id, "--reason", "again"]) == 1
    assert "was released already" in capsys.readouterr().err
    assert cli(["hold", "list", "--db-url", url]) == 0
    assert "0 hold(s) active" in capsys.readouterr().out
    assert cli(["hold", "list", "--db-url", url, "--all", "--json"]) == 0
    assert [h["state"] for h in json.loads(capsys.readouterr().out)] == ["released"]
    # requeue is no way around a hold
    place_hold(store, reason="LEGAL-6", placed_by="ops", request_id="req-1")
    assert cli(["requeue", "--db-url", url, "req-1"]) == 1
    assert "cannot move from on_hold to pending" in capsys.readouterr().err

"""The auditor page's HTML: the ledger (figures, charts, paged records), a request's drill-down,
and the answer to a lookup. Plain server-rendered HTML, every value escaped.

Links are relative, so the pages work wherever the app is mounted (``/gdpr-audit/`` in the API
server, inside the UI's iframe, or standalone). The iframe is sandboxed without top navigation,
so links to the Airflow UI open inside it; open them in a new tab from the context menu.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from gdpr_erasure.auditor.checks import ChainState, PeriodView
from gdpr_erasure.auditor.drilldown import RequestView, task_log_path
from gdpr_erasure.auditor.lookup import CSRF_FIELD, LookupAnswer
from gdpr_erasure.ledger.entries import CLOSED_OUTCOMES
from gdpr_erasure.store import AuditEntry, TaskTry

e = html.escape

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
nav { font-size: .85rem; margin-bottom: .5rem; } nav a { margin-right: 1rem; }
.ok, .broken, .pending, .note { padding: .6rem 1rem; border-radius: 6px; margin: 1rem 0; }
.ok { background: #e6fffa; border: 1px solid #38b2ac; }
.broken { background: #fff5f5; border: 1px solid #e53e3e; }
.pending, .note { background: #fffaf0; border: 1px solid #dd6b20; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; }
.card { border: 1px solid #e2e8f0; border-radius: 6px; padding: .5rem .8rem; min-width: 8rem; }
.card b { display: block; font-size: 1.3rem; } .card span { font-size: .8rem; color: #4a5568; }
table { border-collapse: collapse; font-size: .8rem; width: 100%; }
th, td { border-bottom: 1px solid #e2e8f0; padding: .3rem .5rem; text-align: left; vertical-align: top; }
#records td, #records th, td.when { white-space: nowrap; }
#records tr.hold td { white-space: normal; background: #fffaf0; }
#records tr.review td { white-space: normal; background: #f0f7ff; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: 9px; font-size: .75rem;
  background: #fefcbf; border: 1px solid #d69e2e; color: #744210; }
th { background: #f7fafc; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.charts figure { margin: 0; flex: 1 1 420px; max-width: 720px; }
figcaption { font-size: .85rem; color: #4a5568; margin-top: .3rem; }
.button, button { display: inline-block; padding: .35rem .8rem; border: 1px solid #3182ce; border-radius: 6px;
  background: #ebf8ff; color: #2b6cb0; text-decoration: none; font-size: .85rem; cursor: pointer; }
.pager { margin: .8rem 0; font-size: .85rem; } .pager a, .pager span { margin-right: .8rem; }
.pager span.off { color: #a0aec0; }
form.lookup { border: 1px solid #e2e8f0; border-radius: 6px; padding: .8rem 1rem; max-width: 720px; }
form.lookup label { display: inline-block; margin-right: 1rem; font-size: .85rem; }
form.lookup input { font: inherit; padding: .25rem .4rem; }
.muted { color: #4a5568; font-size: .85rem; } code { font-size: .8rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; font-size: .85rem; }
dl.facts dt { color: #4a5568; } dl.facts dd { margin: 0; }
.systems { display: flex; flex-wrap: wrap; gap: 1rem; }
.systems section { border: 1px solid #e2e8f0; border-radius: 6px; padding: .5rem 1rem; flex: 1 1 300px; }
pre { background: #f7fafc; padding: .6rem; font-size: .75rem; overflow-x: auto; }
"""


CHECKING_RELOAD_SECONDS = 3


def layout(title: str, body: str, *, up: str = "", refresh: int | None = None) -> str:
    """A whole page. ``up`` leads from the page back to the app's root (``""`` or ``"../"``);
    ``refresh`` reloads it after that many seconds (while the chain check is still running)."""
    reload = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>{reload}
<meta name="referrer" content="same-origin">
<style>{CSS}</style></head><body>
<nav><a href="{up}./">Audit ledger</a><a href="{up}./#lookup">Was this person erased?</a></nav>
{body}
</body></html>"""


def _query(**params: Any) -> str:
    """``?a=1&b=2`` of the parameters that are set (datetimes as ISO 8601), HTML-escaped."""
    values = {
        k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in params.items() if v is not None
    }
    return e("?" + urlencode(values, quote_via=quote)) if values else ""


def _cell(value: Any) -> str:
    return e(str(value if value is not None else "-"))


# -- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordsPage:
    """One page of the records list.

    :param entries: the page's records, in chain order.
    :param total: records in the period.
    :param before: records of the period before this page (its position).
    :param last_before: the ``before`` cursor of the period's last page.
    """

    entries: list[AuditEntry]
    total: int
    before: int
    last_before: int

    @property
    def has_previous(self) -> bool:
        return self.before > 0

    @property
    def has_next(self) -> bool:
        return self.before + len(self.entries) < self.total


COLUMNS = [
    ("seq", "#"),
    ("request_id", "Request"),
    ("received_at", "Received"),
    ("completed_at", "Completed"),
    ("kept", "Kept"),
    ("stripe_customer_ids", "Stripe customers"),
    ("stripe_method", "Stripe method"),
    ("twilio_memory_profile_ids", "Twilio profiles"),
    ("twilio_messages_deleted", "Messages"),
    ("twilio_calls_deleted", "Calls"),
    ("segment_regulation_id", "Segment regulation"),
    ("segment_final_status", "Segment status"),
    ("record_hash", "Record hash"),
]


def chain_banner(state: ChainState) -> str:
    report = state.report
    when = f" (checked {state.checked_at:%Y-%m-%d %H:%M:%S} UTC)" if state.checked_at else ""
    if report is None:
        if state.error:
            return (
                f'<div class="broken" id="chain-status">The audit chain could not be checked '
                f"({e(state.error)}); run <code>gdpr-erasure audit verify</code></div>"
            )
        return (
            f'<div class="pending" id="chain-status">Checking the audit chain ({state.records:,} '
            "record(s)); this page reloads itself until it is done</div>"
        )
    rechecking = ""
    if not state.current:
        rechecking = f"; the ledger has grown to {state.records:,} record(s) since, and is being checked"
    elif state.running:
        rechecking = "; being checked again"
    if state.error:
        rechecking += f"; the last check could not run ({state.error})"
    if report.ok:
        return (
            f'<div class="ok" id="chain-status">Audit chain intact: {report.checked} record(s), head '
            f"<code>{e(report.head_hash[:16])}&hellip;</code>{when}{e(rechecking)}</div>"
        )
    first = e(report.problems[0]) if report.problems else ""
    return (
        '<div class="broken" id="chain-status">Audit chain BROKEN: '
        f"run <code>gdpr-erasure audit verify</code>{when}. First break: {first}</div>"
    )


def cards(summary: dict[str, Any]) -> str:
    facts = [
        ("Received", summary["received"]),
        ("Completed", summary["completed"]),
        # Answered too, with what the erasure policy kept (docs/policy.md): never "completed" plain.
        ("Completed with exemptions", summary.get("completed_with_exemptions", 0)),
        ("Objects kept", summary.get("kept_objects", 0)),
        ("On legal hold", summary.get("on_hold", 0)),
        ("Failed", summary["failed"]),
        ("Needs attention", summary["needs_attention"]),
        ("Median time to complete (h)", summary["median_time_to_complete_hours"]),
        ("Max time to complete (h)", summary["max_time_to_complete_hours"]),
        ("Completed after 30 days", summary["completed_late"]),
        ("Open and overdue", summary["open_and_overdue"]),
    ]
    return "".join(f'<div class="card"><b>{_cell(v)}</b><span>{e(k)}</span></div>' for k, v in facts)


def lookup_form(csrf: str) -> str:
    """The "was this person erased?" form: POST only, nothing pre-filled, ever."""
    return f"""<form class="lookup" id="lookup-form" method="post" action="lookup" autocomplete="off">
<p class="muted">Enter the email address or phone number the person gave: any one of them finds
the request (records written before each identifier got its own hash need every one the request
gave; each combination of what you enter is tried). The server computes the keyed hashes the way
the intake did and looks for them in the ledger; what you type is never stored, logged or shown.</p>
<label>Email <input type="email" name="email" id="lookup-email" autocomplete="off"></label>
<label>Phone <input type="text" name="phone" id="lookup-phone" autocomplete="off"
  placeholder="+ country code, number"></label>
<details><summary class="muted">More identifiers the request may have given</summary>
<label>Stripe customer id <input type="text" name="stripe_customer_id" id="lookup-stripe" autocomplete="off"
  placeholder="cus_..."></label>
<label>User id <input type="text" name="user_id" id="lookup-user-id" autocomplete="off"></label>
</details>
<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}">
<button type="submit" id="lookup-submit">Look up</button>
</form>"""


def records_table(rows: Sequence[dict[str, Any]]) -> str:
    head = "".join(f"<th>{e(label)}</th>" for _, label in COLUMNS)
    body = []
    for row in rows:
        if row.get("kind") == "hold":
            body.append(_hold_row(row))
            continue
        if row.get("kind") == "review":
            body.append(_review_row(row))
            continue
        cells = []
        for key, _ in COLUMNS:
            value = str(row[key])
            if key == "record_hash":
                cells.append(f"<td><code>{e(value[:16])}…</code></td>")
            elif key == "request_id":
                cells.append(f'<td><a href="request/{quote(value, safe="")}">{e(value)}</a></td>')
            elif key == "kept":
                cells.append(f"<td>{kept_badge(value)}</td>")
            else:
                cells.append(f"<td>{e(value)}</td>")
        body.append(f'<tr data-seq="{e(str(row["seq"]))}">{"".join(cells)}</tr>')
    return f'<table id="records"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _hold_row(row: dict[str, Any]) -> str:
    """A legal hold placed or released (docs/holds.md), in the records list: its own kind of
    entry, no request's erasure. A hold on a request links to it; one on a person shows the
    identifier's type and a prefix of its keyed hash."""
    if row["hold_target_type"] == "request":
        rid = str(row["hold_target"])
        target = f'request <a href="request/{quote(rid, safe="")}">{e(rid)}</a>'
    else:
        target = f"{e(str(row['hold_target_type']))} <code>#{e(str(row['hold_target'])[:12])}</code>"
    until = f", until {e(str(row['hold_until']))}" if row["hold_until"] else ""
    what = (
        f"Legal hold <code>{e(str(row['hold_id']))}</code> {e(str(row['hold_action']))} on {target}{until}: "
        f"{e(str(row['hold_reason']))}"
    )
    span = len(COLUMNS) - 2
    return (
        f'<tr class="hold" data-seq="{e(str(row["seq"]))}"><td>{e(str(row["seq"]))}</td>'
        f'<td colspan="{span}">{what}</td><td><code>{e(str(row["record_hash"])[:16])}…</code></td></tr>'
    )


def kept_badge(summary: str) -> str:
    """The exemptions badge of a record whose erasure policy kept something: how many objects,
    and the export's summary of them (tag, action, cases, date) on hover. Empty when nothing is."""
    if not summary:
        return ""
    count = len(summary.split("; "))
    return f'<span class="badge" title="{e(summary)}">{count} kept</span>'


def _review_row(row: dict[str, Any]) -> str:
    """A review of what the erasure policy kept (docs/policy.md), in the records list: an entry of
    the request it reviewed, linked to that request's drill-down, never a request of its own."""
    rid = str(row["request_id"])
    checked = f", checked {e(str(row['stripe_customer_ids']))}" if row["stripe_customer_ids"] else ""
    still = f"; still kept: {e(str(row['kept']))}" if row["kept"] else "; nothing kept any more"
    what = (
        f'Review {e(str(row["review"]))} of request <a href="request/{quote(rid, safe="")}">{e(rid)}</a> '
        f"(follows record #{e(str(row['follows_seq']))}{checked}): {e(str(row['outcome']))}{still}"
    )
    span = len(COLUMNS) - 2
    return (
        f'<tr class="review" data-seq="{e(str(row["seq"]))}"><td>{e(str(row["seq"]))}</td>'
        f'<td colspan="{span}">{what}</td><td><code>{e(str(row["record_hash"])[:16])}…</code></td></tr>'
    )


def pager(page: RecordsPage, since: datetime | None, until: datetime | None, limit: int, default: int) -> str:
    size = limit if limit != default else None

    def link(label: str, link_id: str, enabled: bool, **cursor: Any) -> str:
        if not enabled:
            return f'<span class="off" id="{link_id}">{e(label)}</span>'
        href = "./" + _query(**cursor, since=since, until=until, limit=size)
        return f'<a id="{link_id}" href="{href}">{e(label)}</a>'

    if page.entries:
        shown = f"records {page.before + 1:,}&ndash;{page.before + len(page.entries):,} of {page.total:,}"
    else:
        shown = f"no records on this page ({page.total:,} in the period)"
    first_seq = page.entries[0].seq if page.entries else None
    last_seq = page.entries[-1].seq if page.entries else None
    return (
        '<div class="pager">'
        + link("First", "page-first", page.has_previous or not page.entries)
        + link("Previous", "page-previous", page.has_previous and first_seq is not None, before=first_seq)
        + f'<span id="page-position">{shown}</span>'
        + link("Next", "page-next", page.has_next and last_seq is not None, after=last_seq)
        + link("Last", "page-last", page.has_next, before=page.last_before)
        + "</div>"
    )


def index_page(
    *,
    period: PeriodView,
    chain: ChainState,
    page: RecordsPage,
    rows: Sequence[dict[str, Any]],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    default_limit: int,
    csrf: str,
) -> str:
    value = lambda d: e(d.date().isoformat()) if d else ""  # noqa: E731
    period_query = "".join(
        f"&amp;{k}={quote(v.isoformat())}" for k, v in (("since", since), ("until", until)) if v
    )
    body = f"""<h1>GDPR erasure audit ledger</h1>
<form method="get">Records written from <input type="date" name="since" value="{value(since)}">
to <input type="date" name="until" value="{value(until)}"> <button type="submit">Filter</button>
<span class="muted">Export this period:</span>
<a class="button" id="export-csv" href="export?format=csv{period_query}" download>Export CSV</a>
<a class="button" id="export-json" href="export?format=json{period_query}" download>Export JSON</a></form>
{chain_banner(chain)}
<div class="cards" id="summary">{cards(period.summary)}</div>
<h2>Requests completed per ISO week, and time to complete against the 30-day limit</h2>
<div class="charts">
<figure>{period.weekly_svg}
<figcaption>Requests completed per ISO week (Monday to Sunday, UTC).</figcaption></figure>
<figure>{period.deadline_svg}<figcaption id="deadline-summary">{e(period.deadline_sentence)}
Each dot is one or more requests (darker: more); red: over the limit.</figcaption></figure>
</div>
<h2 id="lookup">Was this person erased?</h2>
{lookup_form(csrf)}
<h2>Records</h2>
{pager(page, since, until, limit, default_limit)}
{records_table(rows)}
{pager(page, since, until, limit, default_limit).replace('id="page-', 'id="page-bottom-')}
<p class="muted">Identifiers appear only as keyed hashes, Stripe customers as tags. Open a request for its
timeline, evidence and signed receipt. The same export on the command line:
<code>gdpr-erasure audit export --format csv</code>.</p>"""
    # A page shown before the chain check finished reloads itself until the check has answered.
    checking = chain.report is None and not chain.error
    return layout("GDPR erasure audit", body, refresh=CHECKING_RELOAD_SECONDS if checking else None)


# -- a request ---------------------------------------------------------------------------------


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in pairs)


def _when(moment: datetime | None) -> str | None:
    """A time to the second, in UTC (the stored value keeps the microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else None


def _log_link(ran: TaskTry | None, link_id: str = "") -> str:
    """A link to a task instance's log in the Airflow UI (relative to /gdpr-audit/request/ID),
    named by its task, map index and try."""
    if ran is None:
        return ""
    where = [ran.task_id.rsplit(".", 1)[-1]]
    if ran.map_index >= 0:
        where.append(f"map index {ran.map_index}")
    if ran.try_number:
        where.append(f"try {ran.try_number}")
    attribute = f' id="{e(link_id)}"' if link_id else ""
    return f'<a class="log"{attribute} href="../../{e(task_log_path(ran))}">log: {e(", ".join(where))}</a>'


def _reviews(view: RequestView) -> list[str]:
    """The reviews of what the erasure policy kept (docs/policy.md): each entry with its outcome,
    the customers it erased and what it still keeps. The receipt covers the latest of them."""
    if not view.reviews:
        return []
    rows = []
    for review in view.reviews:
        record = review.record
        stripe = record.get("stripe") or {}
        erased = ", ".join(stripe.get("erased_customer_ids") or []) or "-"
        still = ", ".join(str(item.get("id")) for item in record.get("kept") or []) or "nothing"
        rows.append(
            f'<tr data-seq="{review.seq}"><td>{_cell(record.get("review"))}</td>'
            f'<td class="when">{_cell(_when(review.recorded_at))}</td><td>{review.seq:,}</td>'
            f"<td>{_cell(record.get('outcome'))}</td><td>{e(erased)}</td><td>{e(still)}</td>"
            f"<td><code>{e(review.record_hash[:16])}…</code></td></tr>"
        )
    return [
        '<h3>Reviews of what was kept</h3><table id="reviews"><thead><tr><th>Review</th><th>Written (UTC)'
        "</th><th>Ledger seq</th><th>Outcome</th><th>Erased</th><th>Still kept</th><th>Record hash</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>",
        '<p class="muted">A review is an entry of its own that follows the record (records are never '
        "rewritten). The receipt covers the latest entry: its inclusion proof is that review's, and it "
        "names the record and the earlier reviews by seq and hash.</p>",
    ]


def request_page(view: RequestView) -> str:
    rid = view.request_id
    quoted = quote(rid, safe="")
    request, entry = view.request, view.entry
    status = request.status.value if request else "unknown (no intake row)"
    overview = [
        ("Status", status),
        ("Identifiers given", ", ".join(view.identifier_types) or "-"),
        ("Identifiers (keyed hash)", view.identifiers_hash or "not yet: the request still holds them"),
    ]
    if view.hash_key_id:
        overview.append(("Hash key id", view.hash_key_id))
    if request is not None:
        overview.append(("Received", _when(request.received_at)))
        overview.append(("Completed", _when(request.completed_at) if request.completed_at else "-"))
    timeline = "".join(
        f'<tr><td class="when">{_cell(_when(ev.at))}</td><td>{e(ev.what)}</td>'
        f"<td>{e(ev.outcome)}</td><td>{_cell(ev.tries)}</td><td>{e(ev.detail)}</td>"
        f"<td>{_log_link(ev.log)}</td></tr>"
        for ev in view.timeline
    )
    parts = [
        f"<h1>Request <code>{e(rid)}</code></h1>",
        f'<dl class="facts" id="overview">{_facts(overview)}</dl>',
        "<h2>Timeline</h2>",
        '<table id="timeline"><thead><tr><th>When (UTC)</th><th>What</th><th>Outcome</th><th>Tries</th>'
        f"<th>Detail</th><th>Task log</th></tr></thead><tbody>{timeline}</tbody></table>",
        '<p class="muted">A step\'s time is its last write, and its tries how many times it was written: '
        "each try or re-check, and for the resolve and Stripe steps also the rewrite at closing that "
        "keeps only tags and keyed hashes. Its log is that of the task instance and try that last "
        "worked on it (the closing rewrite does not count).</p>",
    ]
    if entry is None:
        parts.append(
            '<div class="note" id="evidence">No audit record yet: the evidence and the receipt appear '
            "once the request is completed.</div>"
        )
    else:
        systems = "".join(
            f"<section><h3>{e(s.title)}</h3><p class='muted'>Done</p><dl class='facts'>{_facts(s.done)}</dl>"
            f"<p class='muted'>Proven</p><dl class='facts'>{_facts(s.proven) or '<dd>-</dd>'}</dl></section>"
            for s in view.evidence
        )
        kept = "".join(f"<li>{e(item)}</li>" for item in view.kept) or "<li>Nothing.</li>"
        head = view.head
        if view.covered_by_head and head is not None:
            inclusion = (
                f"Covered by the latest signed tree head: size {head.tree_size:,}, signed "
                f"{e(head.timestamp)} with key <code>{e(head.key_id)}</code>, root "
                f"<code>{e(head.root_hash[:16])}…</code>. The receipt carries the inclusion proof."
            )
        elif head is not None:
            inclusion = (
                f"Not yet covered by a signed tree head (the latest has size {head.tree_size:,}); "
                "the pipeline signs one after each batch."
            )
        else:
            inclusion = "No signed tree head yet."
        ledger = [
            ("Position (seq)", f"{entry.seq:,}"),
            ("Written", entry.recorded_at.isoformat()),
            ("Record hash", entry.record_hash),
            ("Previous hash", entry.prev_hash),
        ]
        parts += [
            '<h2 id="evidence">Evidence</h2>',
            f'<div class="systems">{systems}</div>',
            f'<h3>Kept, and why</h3><ul id="kept">{kept}</ul>',
            *_reviews(view),
            '<h2 id="ledger">In the ledger</h2>',
            f'<dl class="facts">{_facts(ledger)}</dl><p class="muted" id="inclusion">{inclusion}</p>',
        ]
        if entry.record.get("outcome") in CLOSED_OUTCOMES:  # with exemptions too: what was kept is in it
            parts.append(
                f'<p><a class="button" id="receipt-download" href="{quoted}/receipt" download>'
                "Download the signed receipt (JSON)</a> "
                '<span class="muted">Check it offline: <code>gdpr-erasure receipt verify FILE '
                "--public-key receipts.pub.pem</code></span></p>"
            )
        parts.append(
            "<details><summary>The record as hashed into the ledger</summary>"
            f'<pre id="record-json">{e(view.record_json)}</pre></details>'
        )
    runs = "".join(
        f'<li>{e(what)}: <a href="../../dags/{quote(dag, safe="")}/runs/{quote(run, safe="")}">'
        f"<code>{e(run)}</code></a></li>"
        for what, dag, run in view.runs
    )
    if view.record_log is not None:
        runs += f"<li>Audit record written: {_log_link(view.record_log, 'record-log')}</li>"
    parts += [
        '<h2 id="runs">Runs and task logs</h2>',
        f"<ul>{runs or '<li>No run has claimed it yet.</li>'}</ul>",
        '<p class="muted">Each step in the timeline links to the log of the task instance that worked '
        "on it: its run, the map index of the request's batch and the try. In that log the request's "
        "lines are marked with its id (search for it: a batch's requests are worked on at once), and "
        "once it was done they were written again together in a log group named by the task, the "
        "request and its outcome. Steps recorded before store "
        "schema 5 have no link: in their run the request is in the batch whose mapped group is named "
        "by the batch's first request id.</p>",
    ]
    return layout(f"Request {rid}: GDPR erasure audit", "\n".join(parts), up="../")


# -- a lookup and errors -----------------------------------------------------------------------


def lookup_page(answer: LookupAnswer, csrf: str) -> str:
    names = {"stripe_customer_id": "Stripe customer id", "user_id": "user id"}
    entered = " and ".join(names.get(name, name) for name in answer.fields)
    if answer.entries:
        rows = "".join(
            f'<tr data-request-id="{e(entry.request_id)}">'
            f'<td><a href="request/{quote(entry.request_id, safe="")}">{e(entry.request_id)}</a></td>'
            f"<td>{_cell(entry.record.get('received_at'))}</td><td>{_cell(entry.record.get('completed_at'))}</td>"
            f"<td>{e(', '.join((entry.record.get('subject') or {}).get('identifier_types') or []))}</td>"
            f"<td>{entry.seq:,}</td><td><code>{e(entry.record_hash[:16])}…</code></td></tr>"
            for entry in answer.entries
        )
        result = (
            f'<div class="ok" id="lookup-result">Erased: {len(answer.entries)} record(s) match the '
            f"{e(entered)} entered.</div>"
            '<table id="lookup-records"><thead><tr><th>Request</th><th>Received</th><th>Completed</th>'
            "<th>Identifiers given</th><th>Ledger seq</th><th>Record hash</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        result = (
            f'<div class="note" id="lookup-result">No record: no erasure in the ledger matches the '
            f"{e(entered)} entered.</div>"
        )
    if answer.unfinished:
        items = "".join(
            f'<li><a href="request/{quote(r.id, safe="")}">{e(r.id)}</a>: {e(r.status.value)}</li>'
            for r in answer.unfinished
        )
        result += (
            '<p id="lookup-unfinished">Requests for the same identifiers that are not completed (their '
            f"identifiers are already replaced by the keyed hash):</p><ul>{items}</ul>"
        )
    note = (
        f'<p class="muted">Searched with hash key <code>{e(answer.key_id)}</code>, every combination of '
        "what was entered. A request that also gave an identifier not entered here (the phone, when only "
        "the email is entered; a Stripe customer id) was hashed with it and is not found: enter every "
        "identifier you know. Records hashed with an earlier key are not found with this one; requests "
        "still being worked keep their identifiers unhashed and are not searched.</p>"
    )
    body = f"<h1>Was this person erased?</h1>{result}{note}<h2>Look up someone else</h2>{lookup_form(csrf)}"
    return layout("Lookup: GDPR erasure audit", body)


def message_page(title: str, message: str, *, up: str = "") -> str:
    return layout(title, f'<h1>{e(title)}</h1><div class="note" id="message">{e(message)}</div>', up=up)

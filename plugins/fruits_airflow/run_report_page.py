"""The run's report as one self-contained HTML page: counts, PCA figures, separability, plots, rejects, or the failure.

Every value is escaped: labels, paths and reasons come from file names, and log tails from the jobs. The
plots are embedded as ``data:`` URIs, so the page makes no further request and its Content-Security-Policy
can forbid every other source.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from html import escape
from typing import Any

from fruits_airflow.run_failures import REFUSED
from fruits_airflow.run_report import PLOTS, RunReport
from fruits_contract import RANDOM_WEIGHTS_NOTE, Separability, Summary

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
COUNTS = (
    (Summary.UPLOADED, "uploaded"),
    (Summary.REMOVED, "removed"),
    (Summary.FEATURIZED, "featurized by this run"),
    (Summary.REUSED, "reused (features already computed)"),
    (Summary.REJECTED, "rejected"),
    (Summary.N_IMAGES, "in the PCA"),
)
NOT_RECORDED = "not recorded"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1rem; color: #1a202c; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #cbd5e0; padding: .25rem .6rem; }
th { background: #edf2f7; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.failure { border-left: 4px solid #e53e3e; background: #fff5f5; padding: .5rem 1rem; }
.note { color: #4a5568; font-style: italic; } pre { background: #f7fafc; padding: .5rem; overflow-x: auto; }
img { max-width: 48%; min-width: 320px; margin: .25rem; border: 1px solid #e2e8f0; } code { font-size: .9em; }
"""


def _text(value: Any) -> str:
    return escape(NOT_RECORDED if value is None else str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return _text(value)
    if isinstance(value, float):
        return escape(f"{value:.{digits}g}")
    return _text(value)


def _percent(value: Any) -> str:
    return escape(f"{100 * value:.1f}%") if isinstance(value, int | float) else _text(value)


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """``rows`` hold HTML already escaped; ``headers`` are escaped here."""
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(html: str, numeric: bool = False) -> str:
    return f'<td class="n">{html}</td>' if numeric else f"<td>{html}</td>"


def counts_section(summary: dict[str, Any]) -> str:
    rows = [[_cell(escape(name)), _cell(_number(summary.get(key)), numeric=True)] for key, name in COUNTS]
    html = "<h2>Images</h2>" + _table(["images", "count"], rows)
    if summary.get(Summary.CLUSTER_CREATED) is False:
        reused = _text(summary.get(Summary.REUSED_RUN_ID))
        html += f"<p>Nothing changed: no cluster, this run reused the outputs of run {reused}.</p>"
    return html


def _usd(value: Any) -> str:
    return escape(f"${value:,.4f}") if isinstance(value, int | float) else _text(value)


def cost_section(summary: dict[str, Any]) -> str:
    """The run's bill (``fruits_airflow.cost``): its nodes by type and market, their node-hours and USD."""
    bill = summary.get(Summary.COST)
    size = summary.get(Summary.CLUSTER_SIZE) or {}
    html = "<h2>Cost (estimate)</h2>"
    if not isinstance(bill, dict):
        return html + "<p>Not recorded for this run.</p>"
    if not bill.get("lines"):
        return html + "<p>No cluster: <b>$0</b>.</p>"
    rows = [
        [
            _cell(_text(line.get("instance_type"))),
            _cell(_text(line.get("market"))),
            _cell(_number(line.get("nodes")), numeric=True),
            _cell(_number(line.get("node_hours")), numeric=True),
            _cell(_usd(line.get("usd_per_node_hour")), numeric=True),
            _cell(_usd(line.get("usd")), numeric=True),
        ]
        for line in bill["lines"]
        if isinstance(line, dict)
    ]
    rows.append(
        [
            _cell("<b>total</b>"),
            _cell(""),
            _cell(""),
            _cell(_number(bill.get("node_hours")), True),
            _cell(""),
            _cell(f"<b>{_usd(bill.get('usd'))}</b>", True),
        ]
    )
    cluster = bill.get("cluster") or {}
    notes = [
        f"Cluster {_text(cluster.get('id'))}: created {_text(cluster.get('created'))}, ready "
        f"{_text(cluster.get('ready'))}, ended {_text(cluster.get('ended'))}.",
        f"Node-hours from EMR's timeline of each instance (one minute at least), at the prices of "
        f"{_text(bill.get('prices_read_on'))} in {_text(bill.get('region'))}: EC2 (spot: an estimate), EMR, the "
        "default EBS volumes and a public IPv4 address. AWS's bill (Cost Explorer) is the final word.",
    ]
    if size.get("reason"):
        notes.insert(0, f"Size: {_text(size['reason'])}.")
    if bill.get("final") is False:
        notes.append("<b>Not final</b>: the cluster had not ended when the run was checked.")
    table = _table(["instance type", "market", "nodes", "node-hours", "USD per node-hour", "USD"], rows)
    return html + table + "".join(f"<p>{note}</p>" for note in notes)


def pca_section(summary: dict[str, Any], variance: dict[str, Any] | None) -> str:
    variance = variance or {}
    k = summary.get(Summary.K, variance.get("k"))
    threshold = summary.get(Summary.THRESHOLD, variance.get("threshold"))
    kept = summary.get(Summary.VARIANCE_KEPT)
    cumulative = variance.get("cumulative") or []
    if kept is None and isinstance(k, int) and 0 < k <= len(cumulative):
        kept = cumulative[k - 1]
    rows = [
        [_cell("components kept (k)"), _cell(_number(k), numeric=True)],
        [_cell("variance threshold"), _cell(_percent(threshold), numeric=True)],
        [_cell("variance kept"), _cell(_percent(kept), numeric=True)],
        [
            _cell("images x features"),
            _cell(f"{_number(variance.get('n_images'))} x {_number(variance.get('n_features'))}"),
        ],
    ]
    return "<h2>PCA</h2>" + _table(["figure", "value"], rows)


def separability_section(separability: dict[str, Any] | None, weights: Any) -> str:
    title = "<h2>Separability: logistic regression on the PCA features</h2>"
    note = f'<p class="note">{escape(RANDOM_WEIGHTS_NOTE)} This run\'s weights: <code>{_text(weights)}</code>.</p>'
    if not separability:
        return f"{title}<p>No separability report for this run.</p>{note}"
    if separability.get(Separability.STATUS) != "ok":
        return f"{title}<p>Not computed: {_text(separability.get(Separability.REASON))}.</p>{note}"
    overall = (
        f"<p>Accuracy on a stratified hold-out of {_percent(separability.get(Separability.HOLDOUT))} per label "
        f"({_number(separability.get(Separability.N_TEST))} images; trained on "
        f"{_number(separability.get(Separability.N_TRAIN))}): "
        f"<b>{_percent(separability.get(Separability.ACCURACY))}</b></p>"
    )
    rows = [
        [
            _cell(_text(entry.get("label"))),
            _cell(_number(entry.get("n_test")), numeric=True),
            _cell(_number(entry.get("correct")), numeric=True),
            _cell(_percent(entry.get("accuracy")) if entry.get("accuracy") is not None else "none held out", True),
        ]
        for entry in separability.get(Separability.PER_LABEL) or []
        if isinstance(entry, dict)
    ]
    return title + overall + _table(["label", "held out", "correct", "accuracy"], rows) + note


def plots_section(plots: dict[str, bytes]) -> str:
    images = "".join(
        f'<img alt="{escape(name)}" src="data:image/png;base64,{base64.b64encode(plots[name]).decode()}">'
        for name in PLOTS
        if name in plots
    )
    return f"<h2>Plots</h2><div>{images or 'No plots for this run.'}</div>"


def rejects_section(summary: dict[str, Any]) -> str:
    rejects = [entry for entry in summary.get(Summary.REJECTS) or [] if isinstance(entry, dict)]
    total = summary.get(Summary.REJECTED)
    if not rejects:
        return f"<h2>Rejected images</h2><p>{'None.' if total == 0 else 'No list recorded.'}</p>"
    shown = (
        f" (the first {len(rejects)} of {_number(total)})" if isinstance(total, int) and total > len(rejects) else ""
    )
    rows = [[_cell(_text(r.get("label"))), _cell(_text(r.get("path"))), _cell(_text(r.get("reason")))] for r in rejects]
    return f"<h2>Rejected images{shown}</h2>" + _table(["label", "path", "reason"], rows)


def locations_section(report: RunReport) -> str:
    outputs = (report.summary or {}).get(Summary.OUTPUTS) or {"run": report.run_uri, "report": report.report_uri}
    items = "".join(f"<li>{_text(name)}: <code>{_text(uri)}</code></li>" for name, uri in outputs.items())
    return f"<h2>Outputs in S3</h2><ul>{items}</ul>"


def _joined(*parts: Any) -> str | None:
    kept = list(dict.fromkeys(str(part) for part in parts if part))  # each once: EMR's Message may repeat its Reason
    return ": ".join(kept) or None


def failure_section(failure: dict[str, Any]) -> str:
    """A failed run's record (``failure.json``): its first line, what EMR says, the log tails; a run refused before
    any cluster (cause ``refused``) has its refusal's line and the task that refused it only."""
    cluster = failure.get("cluster") or {}
    step = failure.get("failed_step") or {}
    refused = failure.get("cause") == REFUSED
    facts: list[tuple[str, Any]] = [
        ("cause", "refused before any cluster" if refused else failure.get("cause")),
        ("refused by", failure.get("refused_by")),
        ("cluster", f"{cluster.get('id')} {cluster.get('state')}" if cluster else None),
        ("cluster reason", _joined(cluster.get("reason_code"), cluster.get("reason_message"))),
        ("failed step", f"{step.get('name')} ({step.get('id')}) {step.get('state')}" if step else None),
        ("step reason", _joined(step.get("reason"), step.get("message"))),
        ("reported at", failure.get("reported_at")),
    ]
    rows = [[_cell(escape(name)), _cell(_text(value))] for name, value in facts if value is not None]
    tails = "".join(
        f"<h3>{_text(log.get('name'))}</h3><p><code>{_text(log.get('uri'))}</code></p>"
        + (
            f"<pre>{escape(log['tail'])}</pre>"
            if log.get("tail")
            else "<p>Not archived yet when reported.</p>"
            if log.get("tail") is None
            else "<p>Empty.</p>"
        )
        for log in failure.get("logs") or []
        if isinstance(log, dict)
    )
    title = "This run was refused before any cluster" if refused else "This run failed"
    return (
        f'<div class="failure"><h2>{title}</h2><p><b>{_text(failure.get("summary"))}</b></p>'
        + _table(["what", "the run's record says" if refused else "EMR says"], rows)
        + tails
        + "</div>"
    )


def _still_holds(failure: dict[str, Any] | None, summary: dict[str, Any]) -> bool:
    """Whether a failure record is the run's last word: not when a later try of the run checked its output
    (a run cleared after a refusal or a failed step keeps the earlier try's ``failure.json``)."""
    if not failure:
        return False
    checked, reported = summary.get(Summary.CHECKED_AT), failure.get("reported_at")
    return not (isinstance(checked, str) and isinstance(reported, str) and checked > reported)


def render_page(report: RunReport, dag_id: str, run_id: str) -> str:
    """The whole page for one run of the pipeline."""
    summary = report.summary or {}
    if report.failure and _still_holds(report.failure, summary):
        body = failure_section(report.failure) + cost_section(report.failure) + locations_section(report)
    elif report.is_empty:
        body = (
            f"<p>Nothing under <code>{_text(report.run_uri)}</code> yet: the run's summary appears once its output "
            "is checked, a failure report once its teardown has run.</p>"
        )
    else:
        body = (
            counts_section(summary)
            + cost_section(summary)
            + pca_section(summary, report.variance)
            + separability_section(report.separability, summary.get(Summary.WEIGHTS))
            + plots_section(report.plots)
            + rejects_section(summary)
            + locations_section(report)
        )
    return page(f"{dag_id} run {run_id}", body)


def page(title: str, body: str) -> str:
    """An HTML document around ``body`` (already escaped); ``title`` is escaped here."""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )

"""The LiveView's summary table: the last traffic run, the lab's health, the faults in force."""

from __future__ import annotations

import html

from meshlab.diagrams.model import Topology
from meshlab.diagrams.observed import calls, number


def traffic_rows(data: dict) -> list[tuple[str, str]]:
    """Requests, successes, failures and latency of one traffic run."""
    if not data:
        return [("Traffic", "none sent yet")]
    ok, failed = number(data, "ok", "succeeded"), number(data, "failed", "errors")
    total = number(data, "requests", "total", "sent")
    total = total if total is not None else (ok or 0) + (failed or 0)
    ok = ok if ok is not None else total - (failed or 0)
    failed = failed if failed is not None else total - ok
    rows = [("Requests", f"{total:g}"), ("Succeeded", f"{ok:g} ({ok / total:.0%})" if total else "0"),
            ("Failed", f"{failed:g}")]
    p50 = number(data, "latency_ms.p50", "p50_ms", "latency.p50")
    p99 = number(data, "latency_ms.p99", "p99_ms", "latency.p99")
    if p50 is not None:
        rows.append(("Latency p50 / p99", f"{p50:.1f} / {p99 if p99 is not None else float('nan'):.1f} ms"))
    return rows


def health_rows(topo: Topology) -> list[tuple[str, str]]:
    """How many nodes, pods and proxies are up."""
    rows = []
    for label, items in (("Nodes up", topo.nodes), ("Pods up", topo.pods), ("Proxies up", topo.proxies)):
        if items:
            rows.append((label, f"{sum(not x.down for x in items)} of {len(items)}"))
    return rows


def call_rows(data: dict) -> list[tuple[str, str, str, str]]:
    """caller -> callee, total, failed, error rate."""
    out = []
    for c in calls(data):
        total, failed = number(c, "total", "count") or 0, number(c, "failed", "errors") or 0
        out.append((f"{c.get('from')} → {c.get('to')}", f"{total:g}", f"{failed:g}",
                    f"{failed / total:.0%}" if total else "–"))
    return out


def table_html(rows: list[tuple[str, str]], call_table: list[tuple[str, ...]]) -> str:
    """Both tables as HTML."""
    esc = html.escape
    main = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{esc(k)}</th>"
                   f"<td style='text-align:left'>{esc(v)}</td></tr>" for k, v in rows)
    out = f"<table>{main}</table>"
    if call_table:
        head = "".join(f"<th>{h}</th>" for h in ("call", "total", "failed", "error rate"))
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{esc(x)}</td>" for x in r) + "</tr>"
                       for r in call_table)
        out += f"<table><tr>{head}</tr>{body}</table>"
    return out


def table_text(rows: list[tuple[str, str]], call_table: list[tuple[str, ...]]) -> str:
    """Both tables as plain text."""
    lines = [f"{k}: {v}" for k, v in rows]
    lines += [f"{c}: {t} calls, {f} failed ({r})" for c, t, f, r in call_table]
    return "\n".join(lines)

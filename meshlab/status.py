"""`meshlab status` as text: nodes, pods and proxies in three small tables (a CLUSTER column with several)."""

from __future__ import annotations

from .tables import text_table


def _table(headers: list[str], rows: list[dict], cells, clustered: bool) -> list[str]:
    """One table; with several clusters each row starts with its cluster."""
    if clustered:
        return text_table(["CLUSTER"] + headers, [[r.get("cluster", "")] + cells(r) for r in rows])
    return text_table(headers, [cells(r) for r in rows])


def status_text(data: dict) -> str:
    """The status dict of Lab.status() as readable text."""
    clustered = len({n.get("cluster", "") for n in data["nodes"]}) > 1
    out = [f"lab {data['lab']} ({data['backend']}), stage {data.get('stage')}, entry {data.get('entrypoint') or '-'}", ""]
    out += _table(["NODE", "IP", "READY"], data["nodes"], lambda n: [n["name"], n["ip"], n["ready"]], clustered) + [""]
    out += _table(["POD", "NODE", "IP", "READY", "PHASE", "CONTAINERS"], data["pods"],
                  lambda p: [p["name"], p["node"], p["ip"], p["ready"], p["phase"],
                             ",".join(f"{c['name']}:{c['state']}" for c in p["containers"])], clustered) + [""]
    if data["proxies"]:
        out += _table(["PROXY", "ROLE", "NODE", "STATE", "ADMIN"], data["proxies"],
                      lambda x: [x["name"], x["role"], x["node"], x["state"], x["admin_url"]], clustered)
    else:
        out.append("no proxies")
    return "\n".join(out)

"""`meshlab status` as text: nodes, pods and proxies in three small tables."""

from __future__ import annotations


def _table(headers: list[str], rows: list[list]) -> list[str]:
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers)] + [fmt.format(*map(str, r)) for r in rows]


def status_text(data: dict) -> str:
    """The status dict of Lab.status() as readable text."""
    out = [f"lab {data['lab']} ({data['backend']}), stage {data.get('stage')}, entry {data.get('entrypoint') or '-'}", ""]
    out += _table(["NODE", "IP", "READY"], [[n["name"], n["ip"], n["ready"]] for n in data["nodes"]]) + [""]
    out += _table(["POD", "NODE", "IP", "READY", "PHASE", "CONTAINERS"],
                  [[p["name"], p["node"], p["ip"], p["ready"], p["phase"],
                    ",".join(f"{c['name']}:{c['state']}" for c in p["containers"])] for p in data["pods"]]) + [""]
    if data["proxies"]:
        out += _table(["PROXY", "ROLE", "NODE", "STATE", "ADMIN"],
                      [[x["name"], x["role"], x["node"], x["state"], x["admin_url"]] for x in data["proxies"]])
    else:
        out.append("no proxies")
    return "\n".join(out)

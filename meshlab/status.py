"""`meshlab status` as text: nodes, pods and proxies in three small tables."""

from __future__ import annotations

from .tables import text_table


def status_text(data: dict) -> str:
    """The status dict of Lab.status() as readable text."""
    out = [f"lab {data['lab']} ({data['backend']}), stage {data.get('stage')}, entry {data.get('entrypoint') or '-'}", ""]
    out += text_table(["NODE", "IP", "READY"], [[n["name"], n["ip"], n["ready"]] for n in data["nodes"]]) + [""]
    out += text_table(["POD", "NODE", "IP", "READY", "PHASE", "CONTAINERS"],
                  [[p["name"], p["node"], p["ip"], p["ready"], p["phase"],
                    ",".join(f"{c['name']}:{c['state']}" for c in p["containers"])] for p in data["pods"]]) + [""]
    if data["proxies"]:
        out += text_table(["PROXY", "ROLE", "NODE", "STATE", "ADMIN"],
                      [[x["name"], x["role"], x["node"], x["state"], x["admin_url"]] for x in data["proxies"]])
    else:
        out.append("no proxies")
    return "\n".join(out)

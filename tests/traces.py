"""Test helpers that read the paths of a traffic result."""


def east_west(result):
    """(caller app hop, proxy hops between, callee app hop) for every app-to-app call in the traces."""
    out = []
    for path in result.paths:
        last, between = None, []
        for hop in path["hops"]:
            if hop["kind"] == "app":
                if last is not None:
                    out.append((last, between, hop))
                last, between = hop, []
            elif hop["kind"] == "proxy" and last is not None:
                between.append(hop)
    return out

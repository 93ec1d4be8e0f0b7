"""Apply-time check of Istio objects: the sidecars' xDS must stay consistent and valid, or nothing is stored."""

from __future__ import annotations

import asyncio
import inspect

from ..base import MeshlabError
from . import kinds, watch

HINT = "nothing was changed and the proxies keep their current config; fix the object and apply again"
VALIDATED_PER_APPLY = 2  # running envoy --mode validate costs ~0.3 s each: the changed proxies, at most this many


def key_of(doc: dict) -> tuple:
    """(kind, namespace, name) as the runtime stores it."""
    return doc["kind"], doc["metadata"].get("namespace", "default"), doc["metadata"]["name"]


def build(objects: dict, pods) -> dict:
    """{node id: Snapshot} the control plane would push for this state."""
    from ...controlplane import model, snapshot

    return snapshot.build_all(model.from_watch(watch.payload(0, objects, pods)))


def changed(before: dict, after: dict) -> list[str]:
    """Node ids whose snapshot differs (by version) between two builds."""
    return [node for node, snap in sorted(after.items())
            if node not in before or getattr(before[node], "version", None) != getattr(snap, "version", None)]


async def check(objects: dict, pods, docs: list[dict], source: str) -> None:
    """Raise a one-line MeshlabError when these docs would give any sidecar dangling or invalid config."""
    if not any(kinds.is_istio(doc) for doc in docs):
        return
    from ...controlplane import envoy_check, snapshot

    pods = list(pods)
    overlay = {**objects, **{key_of(doc): doc for doc in docs}}
    try:
        before, after = build(objects, pods), build(overlay, pods)
    except MeshlabError as exc:
        raise MeshlabError(f"{source}: {exc.message}", exc.hint or HINT) from None
    refused = snapshot.refusal(before, after)
    if refused:
        raise MeshlabError(f"{source}: {refused}", HINT)
    for node in changed(before, after)[:VALIDATED_PER_APPLY]:
        problem = await asyncio.to_thread(envoy_check.validate, after[node], source)
        if inspect.isawaitable(problem):
            problem = await problem
        if problem:
            raise MeshlabError(f"{source}: Envoy would reject the config for {node.split('~')[2]}: {problem}", HINT)

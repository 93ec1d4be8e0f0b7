"""What a lab applied, kept in the backend's facts: the stage's objects and the learner's own (`lab.apply`), so
that `Lab.up` can converge a running lab to exactly a new stage."""

from __future__ import annotations

from . import stages

FACT = "applied"  # backend.remember(applied={"stage": [...], "learner": [...]})
CLUSTER_SCOPED = ("Namespace", "IngressClass")


def ident(doc: dict) -> dict:
    """The least of an object that names it for a delete: apiVersion, kind, name and namespace (if given)."""
    meta = doc.get("metadata") or {}
    namespace = "" if doc.get("kind") in CLUSTER_SCOPED else meta.get("namespace") or ""
    return {"apiVersion": doc.get("apiVersion", ""), "kind": doc.get("kind", ""),
            "metadata": {"name": meta.get("name", ""), **({"namespace": namespace} if namespace else {})}}


def key(doc: dict) -> tuple[str, str, str]:
    """(kind, namespace, name); no namespace and `default` are one place (the lab's namespace)."""
    meta = doc.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    return doc.get("kind", ""), "" if namespace == "default" else namespace, meta.get("name", "")


def idents(docs) -> list[dict]:
    """Each object's ident once, in order."""
    return list({key(d): ident(d) for d in docs}.values())


def recorded(backend) -> dict | None:
    """{"stage": [...], "learner": [...]} as last remembered, or None when this backend has no record."""
    found = backend.recall().get(FACT)
    return {"stage": list(found.get("stage", [])), "learner": list(found.get("learner", []))} if found else None


def any_stage() -> list[dict]:
    """Every object a single-cluster stage declares: what a lab with no record may hold from an earlier stage."""
    return idents(d for n in stages.deployable() if not stages.is_multicluster(n) for d in stages.documents(n))


def plan(before: dict | None, now: list[dict], keep: bool) -> tuple[list[dict], list[dict]]:
    """(objects to delete, the learner's objects that stay) when a stage that applied `now` replaces what
    `before` recorded: the earlier stage's objects go unless the new stage has them; the learner's go too
    unless keep. With no record, any stage's objects the new stage lacks go, and no learner object is known."""
    before = before if before is not None else {"stage": any_stage(), "learner": []}
    wanted = {key(d) for d in now}
    old_stage = [d for d in before["stage"] if key(d) not in wanted]
    stage_keys = {key(d) for d in before["stage"]}
    learner = [d for d in before["learner"] if key(d) not in wanted and key(d) not in stage_keys]
    return (old_stage if keep else old_stage + learner), (learner if keep else [])


def add_learner(backend, docs: list[dict]) -> None:
    """Record objects the learner applied."""
    record = recorded(backend) or {"stage": [], "learner": []}
    record["learner"] = idents(record["learner"] + list(docs))
    backend.remember(**{FACT: record})


def forget(backend, docs: list[dict]) -> None:
    """Drop deleted objects from the record."""
    record = recorded(backend)
    if record:
        gone = {key(d) for d in docs}
        backend.remember(**{FACT: {part: [d for d in items if key(d) not in gone] for part, items in record.items()}})

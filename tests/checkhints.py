"""What every lab's check tests assert about hints: each exercise has at least three, all different, and (where
given) only the last one gives the answer away."""

from __future__ import annotations

from meshlab.checks import base


def assert_hints_get_more_specific(lab: str, ids: list[str], answer_in_last: dict | None = None) -> None:
    assert sorted(ex.id for ex in base.REGISTRY.values() if ex.lab == lab) == ids
    for ex in (base.REGISTRY[f"{lab}/{i}"] for i in ids):
        assert len(ex.hints) >= 3 and len(set(ex.hints)) == len(ex.hints)
        if answer_in_last is not None:
            answer = answer_in_last[ex.id]
            assert answer in ex.hints[-1] and not any(answer in hint for hint in ex.hints[:-1]), ex.id

"""The check of lesson 07: which stage and which adoption path for which organisation, its wrong choices
answered with the learner's own measured table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meshlab import compare
from meshlab.checks import adoption, base
from meshlab.checks.base import check

ROOT = Path(__file__).resolve().parents[2]
RIGHT = {"q1": "b", "q2": "b", "q3": "c", "q4": "a", "q5": "b", "q6": "b"}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    for state in (base._failures, base._revealed, base._hints):
        state.clear()


def row(stage, **fields):
    values = dict(stage=stage, key=f"s{stage}", pods=8, proxies=1, proxy_memory_mb=60.0, p50_ms=17.0, p99_ms=40.0,
                  success_rate=1.0, config_objects=1, failure="", calls_failed="", blast="", app_pods=7)
    return compare.StageRow(**{**values, **fields})


TABLE = [row(2, proxies=3, out_of_reach=7, change_objects=1, change_seconds=1.2),
         row(3, proxies=4, proxy_memory_mb=268.0), row(4, proxies=8, proxy_memory_mb=525.0, change_objects=2,
                                                       change_seconds=1.0),
         row(5, proxies=8, change_objects=1, change_seconds=0.9)]


def test_right_answers_pass_in_any_spelling():
    assert check("which-stage-for-whom", RIGHT, TABLE).ok
    assert check("which-stage-for-whom", {q: f" {a.upper()}) " for q, a in RIGHT.items()}, TABLE).ok
    assert check("which-stage-for-whom", RIGHT).ok  # the table only colours the explanations


@pytest.mark.parametrize("question, wrong, why", [
    ("q1", "c", "stage 4 ran 8 proxies (525 MiB) where stage 3 ran 4 (268 MiB)"),  # sidecars for a VM monolith
    ("q1", "a", "the edge only sees requests entering the cluster"),
    ("q2", "a", "risk the seed"),  # greenfield for a running monolith
    ("q3", "a", "left 7 of 7 pods out of reach"),  # a router for fifty services
    ("q3", "b", "one change took 2 object(s), 1.0 s in your run, against 1 object(s), 0.9 s"),
    ("q4", "b", "greenfield"),
    ("q5", "a", "one failure domain"),  # one data centre
    ("q6", "a", "non-core"),  # a big bang for a bank
])
def test_each_typical_wrong_choice_is_answered_with_the_measured_table(question, wrong, why):
    result = check("which-stage-for-whom", {**RIGHT, question: wrong}, TABLE)
    assert not result.ok
    line = next(l for l in result.received.splitlines() if l.startswith(f"{question}:"))
    assert why in line


def test_a_measured_failover_answers_the_two_data_centre_question():
    from meshlab.compare_multicluster import CrossCluster

    six = row(6, cross=CrossCluster(failover_requests=400, failover_failed=3, failover_s=1.25, killed=2))
    line = next(l for l in check("which-stage-for-whom", {**RIGHT, "q5": "a"}, TABLE + [six]).received.splitlines()
                if l.startswith("q5:"))
    assert "losing cluster-1's copy of a service cost 3 of 400 requests and a 1.2 s switch in your run" in line
    never = row(6, cross=CrossCluster(failover_requests=400, failover_failed=400, failover_s=None))
    assert "400 of 400 requests and no switch at all" in adoption.quiz_for([r.to_dict() for r in TABLE + [never]])[
        "q5"][1]["d"]
    assert "your run" not in adoption.quiz_for(TABLE)["q5"][1]["a"]  # stage 6 not measured: no invented figure


def test_empty_or_odd_answers_are_not_done():
    assert "no answers yet" in check("which-stage-for-whom", {q: None for q in RIGHT}, TABLE).received
    assert not check("which-stage-for-whom", "bbcabb", TABLE).ok
    assert not check("which-stage-for-whom", {**RIGHT, "q6": None}, TABLE).ok
    assert not check("which-stage-for-whom", {**RIGHT, "q5": "z"}).ok


def test_a_table_of_dicts_or_nothing_works_too():
    assert "stage 4 ran 8 proxies" in adoption.quiz_for([r.to_dict() for r in TABLE])["q1"][1]["c"]
    assert "stage 4 ran ? proxies" in adoption.quiz_for(None)["q1"][1]["c"]


def test_quiz_matches_the_lesson():
    nb = json.loads((ROOT / "lessons" / "07-compare.ipynb").read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    for q, (right, why) in adoption.quiz_for(TABLE).items():
        block = re.search(rf"\*\*{q}\.\*\*(.*?)(?=\*\*q\d\.\*\*|\Z)", text, re.S)
        assert block, f"{q} is not in the lesson"
        letters = re.findall(r"^- ([a-d])\)", block.group(1), re.M)
        assert right in letters and set(why) <= set(letters), q
    assert 'check("which-stage-for-whom", answers, rows)' in code


def test_hints_get_more_specific():
    hints = base.find(f"{adoption.LESSON}/which-stage-for-whom").hints
    assert len(hints) == 3 and len(set(hints)) == 3

"""Lesson 00's check: the learner counts the east-west calls in one request's trace."""

from meshlab.checks.welcome import east_west_calls

REPLY = {"calls": [{"from": "frontend", "to": "catalog"}, {"from": "frontend", "to": "reviews"},
                   {"from": "reviews", "to": "ratings"}]}


def test_the_right_count_passes():
    result = east_west_calls(REPLY, 3)
    assert result.ok and "reviews->ratings" in result.received


def test_no_answer_is_not_done_and_does_not_raise():
    assert not east_west_calls(REPLY, None).ok
    assert not east_west_calls(None, None).ok


def test_typical_wrong_answers_fail_with_a_reason():
    assert "your own call" in east_west_calls(REPLY, 1).received
    assert not east_west_calls(REPLY, 2).ok
    assert not east_west_calls(REPLY, "3").ok
    assert not east_west_calls(REPLY, True).ok


def test_the_count_comes_from_the_trace_not_a_fixed_number():
    assert east_west_calls({"calls": REPLY["calls"][:2]}, 2).ok
    assert not east_west_calls({"calls": REPLY["calls"][:2]}, 3).ok

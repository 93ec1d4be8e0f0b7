"""Multiple-choice quizzes: every question's right letter, and why each wrong one is wrong."""

from __future__ import annotations

from typing import Any, Mapping

from .base import CheckResult


def judge(answers: Any, quiz: Mapping) -> CheckResult:
    """Pass when every question has its right letter; say why each wrong choice is wrong."""
    expected = f"the right letter for each of {', '.join(quiz)}"
    if not isinstance(answers, Mapping):
        return CheckResult(False, expected, f"answers is a {type(answers).__name__}, not a dict")
    given = {q: str(answers.get(q) or "").strip().lower().rstrip(")") for q in quiz}
    if not any(given.values()):
        return CheckResult(False, expected, "no answers yet: put a letter in each entry of `answers`")
    lines, right = [], 0
    for q, (letter, why) in quiz.items():
        choice = given[q]
        if choice == letter:
            right += 1
            lines.append(f"{q}: {choice}  right")
        elif not choice:
            lines.append(f"{q}: (no answer)")
        else:
            lines.append(f"{q}: {choice}  not quite: {why.get(choice, 'choose a, b, c or d')}")
    return CheckResult(right == len(quiz), expected, f"{right}/{len(quiz)} right\n" + "\n".join(lines))


def after(expected: str, text: str, what: str, answers: Any, quiz: Mapping) -> CheckResult:
    """The verdict of an exercise whose measured part (`text`, `what` it was) is right: now the quiz decides."""
    verdict = judge(answers, quiz)
    if not verdict.ok:
        return CheckResult(False, expected, f"{text}\nthe {what} is right; the quiz: {verdict.received}")
    return CheckResult(True, expected, f"{text}\n{verdict.received}")

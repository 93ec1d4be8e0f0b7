"""Check results, the exercise registry, `check()` and small predicates for writing checks.

A check author writes, in a module under `meshlab/checks/` (imported on demand)::

    @exercise("01-edge-proxy-lab", "ingress-rules", hints=["vague", "closer", "nearly the answer"])
    def ingress_rules(entry_url):
        return responds_with(entry_url + "/api/", status=200, body_contains="catalog", host="shop.local")

A notebook calls ``check("ingress-rules", entry_url)``: the check runs, never raises on a wrong or
empty answer, its outcome is recorded in the learner's progress, and the result prints
PASS / NOT DONE YET with Expected / Received and a hint. The n-th failed attempt shows hint
n (the last one once they run out); ``show_hint()`` reveals the next hint on demand.
The lab id given to ``@exercise`` must be the stem of the solutions notebook.
"""

from __future__ import annotations

import functools
import html
import importlib
import pkgutil
import sys
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

PASS, NOT_DONE = "PASS", "NOT DONE YET"
_HELPERS = {"base", "stats", "widget", "quiz"}  # modules of this package that hold no exercises


@dataclass(repr=False)
class CheckResult:
    """The outcome of one check: what was expected, what was seen, hints to get there."""

    ok: bool
    expected: str = ""
    received: str = ""
    hints: list[str] = field(default_factory=list)
    name: str = ""
    lab: str = ""
    hint_level: int = 1  # how many hints are revealed; the last revealed one is shown
    recorded: bool = False

    @property
    def hint(self) -> str:
        """The hint to show now ("" when passing or when there are none)."""
        if self.ok or not self.hints:
            return ""
        return self.hints[max(0, min(self.hint_level, len(self.hints)) - 1)]

    def _hint_label(self) -> str:
        n = len(self.hints)
        return f"Hint {min(max(self.hint_level, 1), n)}/{n}" if n > 1 else "Hint"

    def __str__(self) -> str:
        lines = [f"{PASS if self.ok else NOT_DONE}  {self.name}".rstrip()]
        for label, text in (("Expected", self.expected), ("Received", self.received), (self._hint_label(), self.hint)):
            if text:
                lines.append(f"  {label}: " + str(text).replace("\n", "\n      "))
        return "\n".join(lines)

    __repr__ = __str__

    def __bool__(self) -> bool:
        return self.ok

    def _repr_html_(self) -> str:
        colour, word = ("#1b7f3b", PASS) if self.ok else ("#b35900", NOT_DONE)
        rows = "".join(
            f"<div><b>{label}:</b><pre style='margin:2px 0 6px 0;white-space:pre-wrap'>{html.escape(str(text))}</pre></div>"
            for label, text in (("Expected", self.expected), ("Received", self.received)) if text)
        hint = f"<div><b>{self._hint_label()}:</b> {html.escape(self.hint)}</div>" if self.hint else ""
        return (f"<div style='border-left:4px solid {colour};padding:4px 10px'>"
                f"<div style='color:{colour};font-weight:bold'>{word} <code>{html.escape(self.name)}</code></div>"
                f"{rows}{hint}</div>")


@dataclass
class Exercise:
    """A registered exercise: its lab, id, hints and the check function."""

    lab: str
    id: str
    hints: list[str]
    func: Callable[..., Any]

    @property
    def key(self) -> str:
        return f"{self.lab}/{self.id}"


REGISTRY: dict[str, Exercise] = {}
_failures: dict[str, int] = {}  # failed attempts this session, per exercise key
_revealed: dict[str, int] = {}  # hints revealed so far, per exercise key
_hints: dict[str, list[str]] = {}  # the hints last seen, per exercise key
_last: list[str] = []  # the key of the last exercise checked


def one_line(exc: BaseException) -> str:
    """`ExcType: first line of the message`."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _as_result(value: Any) -> CheckResult:
    """Coerce what a check function returned into a CheckResult."""
    if isinstance(value, CheckResult):
        return value
    if isinstance(value, bool):
        return CheckResult(value, expected="the check to pass", received="passed" if value else "failed")
    return CheckResult(False, expected="a CheckResult", received=f"{type(value).__name__}: {value!r}"[:200])


def run_safely(func: Callable[..., Any], *args: Any, **kwargs: Any) -> CheckResult:
    """Call a check function; any exception becomes a NOT DONE YET result."""
    try:
        return _as_result(func(*args, **kwargs))
    except Exception as exc:  # a learner's wrong or empty answer must never raise
        return CheckResult(False, expected="the check to run on your answer", received=one_line(exc))


def exercise(lab: str, exercise_id: str, hints: list[str] | None = None) -> Callable:
    """Register a check function for `lab`/`exercise_id`; calling it never raises."""
    def decorate(func: Callable[..., Any]) -> Callable[..., CheckResult]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> CheckResult:
            result = run_safely(func, *args, **kwargs)
            result.lab, result.name = lab, exercise_id
            result.hints = result.hints or list(ex.hints)
            return result

        ex = Exercise(lab, exercise_id, list(hints or []), wrapper)
        wrapper.exercise = ex
        REGISTRY[ex.key] = ex
        return wrapper
    return decorate


def _import_check_modules() -> list[str]:
    """Import every exercise module of `meshlab.checks`; return one-line import errors."""
    package = sys.modules[__name__.rsplit(".", 1)[0]]
    errors = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _HELPERS or info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{package.__name__}.{info.name}")
        except Exception as exc:
            errors.append(f"meshlab.checks.{info.name}: {one_line(exc)}")
    return errors


def find(exercise_id: str) -> Exercise:
    """The registered exercise for `"lab/id"` or a unique `"id"` (LookupError otherwise)."""
    errors = [] if _matches(exercise_id) else _import_check_modules()
    found = _matches(exercise_id)
    if len(found) == 1:
        return found[0]
    if found:
        raise LookupError(f"exercise {exercise_id!r} is in several labs ({', '.join(e.lab for e in found)}): "
                          "write check('LAB/EXERCISE')")
    extra = f" (modules that failed to import: {'; '.join(errors)})" if errors else ""
    raise LookupError(f"no check registered for exercise {exercise_id!r}{extra}")


def _matches(exercise_id: str) -> list[Exercise]:
    if "/" in exercise_id:
        return [REGISTRY[exercise_id]] if exercise_id in REGISTRY else []
    return [e for e in REGISTRY.values() if e.id == exercise_id]


def evaluate(target: Any, *args: Any, **kwargs: Any) -> CheckResult:
    """Run a check given an exercise id, a check function or a ready CheckResult (no recording)."""
    if isinstance(target, CheckResult):
        return target
    if isinstance(target, str):
        return find(target).func(*args, **kwargs)
    return run_safely(target, *args, **kwargs)


def check(target: Any, *args: Any, **kwargs: Any) -> CheckResult:
    """Run a check (id, function or result), record it in progress, and pick the hint to show."""
    result = evaluate(target, *args, **kwargs)
    if result.recorded:
        return result
    key = f"{result.lab}/{result.name}"
    _hints[key] = list(result.hints)
    if not result.ok:
        _failures[key] = _failures.get(key, 0) + 1
        _revealed[key] = max(_revealed.get(key, 0), _failures[key])
    result.hint_level = _revealed.get(key, 1)
    _last[:] = [key]
    result.recorded = True
    if result.lab and result.name:
        _record(result)
    return result


def _record(result: CheckResult) -> None:
    try:
        from ..course import progress
        progress.record(result.lab, result.name, result.ok)
    except Exception as exc:  # progress is a convenience: never break a check over it
        warnings.warn(f"meshlab: could not save progress: {one_line(exc)}", stacklevel=3)


def next_hint(target: Any = None) -> tuple[int, list[str]]:
    """Reveal one more hint (of an id, a check function, a result; default: the last checked)."""
    if target is None or isinstance(target, CheckResult):
        key = f"{target.lab}/{target.name}" if target is not None else (_last[0] if _last else "")
        hints = _hints.get(key) or (target.hints if target is not None else [])
    else:
        ex = getattr(target, "exercise", None) or find(target)
        key, hints = ex.key, _hints.get(ex.key) or ex.hints
    if not hints:
        return 0, []
    _revealed[key] = min(_revealed.get(key, 0) + 1, len(hints))
    return _revealed[key], list(hints)


def show_hint(target: Any = None) -> None:
    """Print the next hint of an exercise (default: the last one checked)."""
    if target is None and not _last:
        print("Run a check first, then ask for a hint.")
        return
    level, hints = next_hint(target)
    print(f"Hint {level}/{len(hints)}: {hints[level - 1]}" if hints else "No hints for this exercise.")


def expect_equal(received: Any, expected: Any, what: str = "") -> CheckResult:
    """Pass when `received == expected`; `what` names the value in the messages."""
    prefix = f"{what}: " if what else ""
    return CheckResult(received == expected, expected=prefix + _show(expected), received=prefix + _show(received))


def all_of(*results: CheckResult) -> CheckResult:
    """Pass when every result passes; otherwise the first failure (all must be computed already)."""
    for result in results:
        if not result.ok:
            return result
    return CheckResult(True, expected="; ".join(r.expected for r in results if r.expected),
                       received="; ".join(r.received for r in results if r.received))


def responds_with(url: str, status: int = 200, body_contains: str | None = None, host: str | None = None,
                  method: str = "GET", headers: dict | None = None, timeout: float = 5.0) -> CheckResult:
    """Send one HTTP request (no proxies) and compare the status and body with what is expected."""
    want = f"{method} {url}" + (f" (Host: {host})" if host else "") + f" -> {status}"
    if body_contains is not None:
        want += f", body containing {body_contains!r}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
        if host:
            request.add_header("Host", host)
        with opener.open(request, timeout=timeout) as response:
            got_status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        got_status, body = exc.code, exc.read() if exc.fp else b""
    except Exception as exc:  # refused, timed out, bad URL: report, never raise
        reason = getattr(exc, "reason", None)
        return CheckResult(False, expected=want, received=one_line(reason if isinstance(reason, BaseException) else exc))
    text = body.decode("utf-8", "replace")
    ok = got_status == status and (body_contains is None or body_contains in text)
    return CheckResult(ok, expected=want, received=f"{got_status}, body: {_clip(text)}")


def _show(value: Any) -> str:
    return value if isinstance(value, str) and value else repr(value)


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."

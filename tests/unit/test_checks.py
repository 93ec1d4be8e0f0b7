"""Check results, the exercise registry, hints, predicates and the CheckButton."""

import http.server
import json
import socket
import threading

import pytest

from meshlab.checks import base
from meshlab.checks.base import (CheckResult, all_of, check, exercise, expect_equal, find, responds_with,
                                 show_hint)
from meshlab.checks.widget import CheckButton
from meshlab.course import progress


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MESHLAB_LEARNER", "tester")
    saved = dict(base.REGISTRY)
    for state in (base._failures, base._revealed, base._hints):
        state.clear()
    base._last.clear()
    yield
    base.REGISTRY.clear()
    base.REGISTRY.update(saved)


HINTS = ["look at the paths", "add a rule for /api", "path: /api, pathType: Prefix"]


def _register(lab="t-lab", ex="answer"):
    @exercise(lab, ex, hints=HINTS)
    def answer_is_42(value):
        return expect_equal(value, 42, "answer")
    return answer_is_42


def test_text_shows_verdict_expected_received_and_first_hint():
    result = CheckResult(False, expected="200", received="404", hints=HINTS, name="ingress-rules")
    text = str(result)
    assert text.splitlines()[0] == "NOT DONE YET  ingress-rules"
    assert "Expected: 200" in text and "Received: 404" in text and "Hint 1/3: look at the paths" in text
    assert repr(result) == text and not result
    passed = str(CheckResult(True, "200", "200", HINTS, "ingress-rules"))
    assert passed.startswith("PASS  ingress-rules") and "Hint" not in passed


def test_html_is_escaped():
    html = CheckResult(False, expected="<b>", received="a & b", name="x<y")._repr_html_()
    assert "&lt;b&gt;" in html and "a &amp; b" in html and "x&lt;y" in html and "NOT DONE YET" in html


def test_exercise_registers_and_never_raises():
    func = _register()
    assert find("answer").func is func and find("t-lab/answer").lab == "t-lab"
    assert func(42).ok and func(42).name == "answer"
    wrong = func(41)
    assert not wrong.ok and wrong.received == "answer: 41" and wrong.hints == HINTS

    @exercise("t-lab", "crashes")
    def crashes(value):
        return value["missing"]

    result = crashes({})
    assert not result.ok and result.received == "KeyError: 'missing'"

    @exercise("t-lab", "returns-none")
    def returns_none():
        return None

    assert not returns_none().ok


def test_unknown_and_ambiguous_ids():
    _register("t-lab", "same")
    _register("u-lab", "same")
    with pytest.raises(LookupError, match="several labs"):
        find("same")
    assert find("u-lab/same").lab == "u-lab"
    with pytest.raises(LookupError, match="no check registered"):
        find("nope")


def test_check_records_progress_and_hints_get_more_specific(capsys):
    _register()
    levels = [check("answer", 0).hint for _ in range(4)]
    assert levels == [HINTS[0], HINTS[1], HINTS[2], HINTS[2]]
    assert check("answer", 42).ok
    rec = progress.status()["t-lab"]["answer"]
    assert rec["attempts"] == 5 and rec["done"] and rec["learner"] == "tester"


def test_show_hint_reveals_the_next_one(capsys):
    func = _register()
    show_hint()
    assert "Run a check first" in capsys.readouterr().out
    check(func, 1)
    show_hint()
    assert capsys.readouterr().out.strip() == f"Hint 2/3: {HINTS[1]}"
    show_hint("answer")
    show_hint("answer")
    assert capsys.readouterr().out.splitlines() == [f"Hint 3/3: {HINTS[2]}"] * 2
    assert check(func, 1).hint == HINTS[2]


def test_check_accepts_results_and_plain_functions():
    done = check(CheckResult(True, name="x", lab="t-lab"))
    assert done.recorded and check(done) is done
    assert progress.status()["t-lab"]["x"]["attempts"] == 1
    assert not check(lambda: 1 / 0).ok


def test_expect_equal_and_all_of():
    assert expect_equal({"a": 1}, {"a": 1}).ok
    first = expect_equal(1, 2, "replicas")
    assert first.expected == "replicas: 2"
    assert all_of(expect_equal(1, 1), first, expect_equal(3, 4)) is first
    assert all_of(expect_equal(1, 1), expect_equal("a", "a")).ok


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200 if self.path == "/api" else 404
        body = json.dumps({"service": "catalog", "host": self.headers.get("Host")}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_responds_with(server):
    assert responds_with(server + "/api", body_contains="catalog").ok
    assert responds_with(server + "/api", body_contains="shop.local", host="shop.local").ok
    missing = responds_with(server + "/", status=200)
    assert not missing.ok and missing.received.startswith("404")
    assert "-> 200" in missing.expected
    assert not responds_with(server + "/api", body_contains="reviews").ok


def test_responds_with_reports_a_refused_connection():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = responds_with(f"http://127.0.0.1:{port}/", timeout=2)
    assert not result.ok and "ConnectionRefusedError" in result.received
    assert not responds_with("not a url").ok


def test_check_button_headless(capsys):
    func = _register()
    button = CheckButton(func, 41)
    button.check()
    out = capsys.readouterr().out
    assert out.startswith("NOT DONE YET  answer") and HINTS[0] in out
    button.hint()
    assert capsys.readouterr().out.strip() == f"Hint 2/3: {HINTS[1]}"
    assert CheckButton("answer", 42).run().ok
    assert "call .check()" in repr(button)


def test_check_button_widget_clicks():
    _register()
    button = CheckButton("answer", 0)
    box = button.widget
    check_button, hint_button = box.children[0].children
    result_box, hint_box = box.children[1], box.children[2]
    hint_button.click()
    assert "Hint 1/3" in hint_box.value
    check_button.click()
    assert "NOT DONE YET" in result_box.value and check_button.description == "Check"
    hint_button.click()
    assert "Hint 2/3" in hint_box.value and HINTS[0] in hint_box.value
    bundle = button._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "CheckButton" in bundle["text/plain"]


def test_check_button_reports_an_unknown_id_in_the_widget():
    button = CheckButton("no-such-exercise")
    check_button = button.widget.children[0].children[0]
    check_button.click()
    assert "LookupError" in button.widget.children[1].value

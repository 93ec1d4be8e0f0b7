"""A fake kubectl/kind/docker Runner for the cluster backends' unit tests: records every command and answers from
rules (tokens that must appear in order in argv, newest rule first)."""

from __future__ import annotations

from subprocess import CompletedProcess


class FakeRunner:
    """Records commands in `calls` (argv lists), their stdin in `inputs`, spawns in `spawned` as (argv, detached);
    `after` hooks run when a command containing their tokens runs."""

    def __init__(self, spawns: bool = True):
        self.calls: list[list[str]] = []
        self.inputs: list[str | None] = []
        self.rules: list[tuple[list[str], CompletedProcess]] = []
        self.hooks: list[tuple[list[str], object]] = []
        self.spawned: list[tuple[list[str], bool]] = []
        self.spawns = spawns

    def on(self, *tokens: str, stdout="", stderr="", rc=0) -> "FakeRunner":
        self.rules.insert(0, (list(tokens), CompletedProcess([], rc, stdout, stderr)))
        return self

    def after(self, *tokens: str, then) -> None:
        self.hooks.append((list(tokens), then))

    def run(self, argv, input=None, timeout=120.0):
        self.calls.append(list(argv))
        self.inputs.append(input)
        for tokens, hook in self.hooks:
            if all(t in argv for t in tokens):
                hook(argv)
        for tokens, reply in self.rules:
            rest = iter(argv)
            if all(any(t == a for a in rest) for t in tokens):
                return CompletedProcess(argv, reply.returncode, reply.stdout, reply.stderr)
        return CompletedProcess(argv, 0, "", "")

    def spawn(self, argv, log_path, detached=False):
        if not self.spawns:
            raise AssertionError("no port-forward expected in this test")
        self.spawned.append((list(argv), detached))
        return 4242 + len(self.spawned)

    @property
    def argvs(self) -> list[list[str]]:
        return list(self.calls)

    def applied(self) -> bool:
        return any("apply" in a for a in self.calls)

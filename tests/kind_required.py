"""Whether an opt-in kind test runs, skips or fails: with MESHLAB_REQUIRE_KIND=1 a missing tool is a failure."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Mapping

REQUIRE = "MESHLAB_REQUIRE_KIND"
OFF = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Missing:
    """What this machine lacks for the kind suite: each entry is (what, how to get it)."""

    kind: list[tuple[str, str]] = field(default_factory=list)  # docker, its engine, kind, kubectl: every kind test
    istio: list[tuple[str, str]] = field(default_factory=list)  # istioctl at the pinned Istio: stages 5 and 6


@dataclass(frozen=True)
class Verdict:
    """'run', 'skip' or 'fail', and the one-line reason."""

    action: str
    reason: str = ""


def required(env: Mapping[str, str]) -> bool:
    """Whether MESHLAB_REQUIRE_KIND asks for the whole kind suite (any value but empty/0/false/no/off)."""
    return env.get(REQUIRE, "").strip().lower() not in OFF


def decide(env: Mapping[str, str], missing: Missing) -> Verdict:
    """Required: any missing tool (istioctl too) fails. Otherwise a missing kind tool skips, as before; the stage 5
    and 6 tests keep skipping without istioctl on their own."""
    if required(env):
        lacking = missing.kind + missing.istio
        if lacking:
            return Verdict("fail", f"{REQUIRE}=1 but the kind suite cannot run here: missing "
                                   f"{', '.join(what for what, _ in lacking)}; how: {'; '.join(how for _, how in lacking)}")
        return Verdict("run")
    if missing.kind:
        return Verdict("skip", f"kind backend not available here: missing {', '.join(what for what, _ in missing.kind)} "
                               f"(set {REQUIRE}=1 to make this a failure)")
    return Verdict("run")


def probe(runner=None, which=shutil.which) -> Missing:
    """Ask this machine (docker info, istioctl version) what the kind suite lacks."""
    from meshlab.backends import istio
    from meshlab.backends.kind import KindBackend
    from meshlab.backends.kubectl import Runner

    runner = runner or Runner()
    found = KindBackend.availability(runner, which=which)
    missing = Missing(kind=list(zip(found.missing, found.hints)))
    if not which("istioctl"):
        missing.istio.append(("istioctl", istio.download_hint()))
    else:
        version = istio.client_version(runner)
        if not istio.version_ok(version):
            missing.istio.append((f"istioctl {istio.VERSION} (found {version or 'one that does not answer'})",
                                  istio.download_hint()))
    return missing

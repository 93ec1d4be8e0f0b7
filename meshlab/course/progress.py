"""The learner's progress: one JSON file per course, written atomically, readable by the learner only.

File: `<data>/progress/<course>.json`, where <data> is `$MESHLAB_DATA`, else
`$XDG_DATA_HOME/meshlab`, else `~/.local/share/meshlab`. The learner is `$MESHLAB_LEARNER`,
else the OS user. Layout::

    {"course": "meshlab", "format": 1,
     "learners": {"alice": {"01-edge-proxy-lab": {"ingress-rules":
        {"learner": "alice", "done": true, "attempts": 3,
         "first_attempt": "2026-01-05T10:00:00Z", "last_attempt": "2026-01-05T10:04:10Z"}}}}}

`done` stays true once an exercise has passed; `attempts` counts every check.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Iterable, Iterator

COURSE = "meshlab"
FORMAT = 1
CSV_FIELDS = ["learner", "lab", "exercise", "done", "attempts", "last_attempt"]


def data_dir() -> Path:
    """Where meshlab keeps per-user data."""
    if os.environ.get("MESHLAB_DATA"):
        return Path(os.environ["MESHLAB_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "meshlab"


def progress_file(course: str = COURSE) -> Path:
    """The progress file of one course."""
    return data_dir() / "progress" / f"{course}.json"


def learner() -> str:
    """Who is learning: `$MESHLAB_LEARNER`, else the OS user."""
    if os.environ.get("MESHLAB_LEARNER"):
        return os.environ["MESHLAB_LEARNER"]
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load(path: Path) -> dict:
    """A progress file's content (an empty one when the file does not exist)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"course": Path(path).stem, "format": FORMAT, "learners": {}}
    except ValueError as exc:
        raise ValueError(f"{path}: not a meshlab progress file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("learners"), dict):
        raise ValueError(f"{path}: not a meshlab progress file (no 'learners')")
    return data


def save(path: Path, data: dict) -> None:
    """Write atomically (temp file + os.replace), mode 0600."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.chmod(tmp, 0o600)
            json.dump(data, out, indent=1, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write between kernels (advisory lock; none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_or_set_aside(path: Path) -> dict:
    """Load; a corrupt file is renamed to `*.corrupt` (kept for inspection) and progress restarts."""
    try:
        return load(path)
    except ValueError:
        os.replace(path, f"{path}.corrupt")
        return load(path)


def record(lab: str, exercise: str, ok: bool, course: str = COURSE) -> dict:
    """Count one attempt at an exercise; returns its updated record."""
    path, who, now = progress_file(course), learner(), _now()
    with _locked(path):
        data = _load_or_set_aside(path)
        entry = data["learners"].setdefault(who, {}).setdefault(lab, {}).setdefault(
            exercise, {"learner": who, "done": False, "attempts": 0, "first_attempt": now})
        entry["attempts"] += 1
        entry["done"] = bool(entry["done"] or ok)
        entry["last_attempt"] = now
        save(path, data)
    return dict(entry)


def status(course: str = COURSE) -> dict:
    """This learner's records: {lab: {exercise: record}}."""
    return load(progress_file(course))["learners"].get(learner(), {})


def reset(lab: str, course: str = COURSE) -> int:
    """Forget this learner's progress in one lab; returns how many exercises were forgotten."""
    path = progress_file(course)
    with _locked(path):
        data = load(path)
        removed = data["learners"].get(learner(), {}).pop(lab, {})
        if removed:
            save(path, data)
    return len(removed)


def reset_lab(lab: str, course: str = COURSE) -> str:
    """CLI: reset a lab's progress (the id, or a unique prefix such as `01`); a one-line message."""
    from .catalog import discover

    known = set(status(course)) | {nb.id for nb in discover() if nb.kind == "lab"}
    matches = [lab] if lab in known else sorted(k for k in known if k.startswith(lab))
    if len(matches) > 1:
        return f"'{lab}' matches several labs: {', '.join(matches)}"
    name = matches[0] if matches else lab
    count = reset(name, course)
    return f"reset {name} for {learner()}: {count} exercise record(s) cleared"


def _files(files: Iterable[str | Path] | None) -> list[Path]:
    if not files:
        return [progress_file()]
    found: list[Path] = []
    for item in map(Path, files):
        found.extend(sorted(item.rglob("*.json")) if item.is_dir() else [item])
    return found


def rows(files: Iterable[str | Path] | None = None, catalog: list | None = None) -> list[dict]:
    """One row per learner and exercise from progress files (default: this user's), sorted.

    With `catalog` (from `catalog.discover()`), exercises a learner never tried get a row too."""
    table: dict[tuple[str, str, str], dict] = {}
    for path in _files(files):
        try:
            data = load(path)
        except (ValueError, OSError) as exc:
            print(f"meshlab: skipping {exc}", file=sys.stderr)
            continue
        for who, labs in data["learners"].items():
            for lab, exercises in labs.items():
                for ex, rec in exercises.items():
                    row = {"learner": who, "lab": lab, "exercise": ex, "done": bool(rec.get("done")),
                           "attempts": int(rec.get("attempts", 0)), "last_attempt": rec.get("last_attempt", "")}
                    old = table.get((who, lab, ex))
                    if old is None or row["last_attempt"] > old["last_attempt"]:
                        table[(who, lab, ex)] = row
    for who in {key[0] for key in table}:
        for nb in catalog or []:
            for ex in nb.exercises:
                table.setdefault((who, ex.lab, ex.id), {"learner": who, "lab": ex.lab, "exercise": ex.id,
                                                        "done": False, "attempts": 0, "last_attempt": ""})
    return [table[key] for key in sorted(table)]


def write_csv(table: list[dict], out: IO[str]) -> None:
    """Rows as CSV with a header line."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({**row, "done": "true" if row["done"] else "false"})


def export_csv(path_or_stdout: str | Path | IO[str] | None = "-", files: Iterable[str | Path] | None = None) -> int:
    """CLI: progress files (default: this user's; folders are searched) as CSV to a path or stdout ("-")."""
    from .catalog import discover

    table = rows(files, catalog=discover())
    if path_or_stdout in (None, "-"):
        write_csv(table, sys.stdout)
    elif hasattr(path_or_stdout, "write"):
        write_csv(table, path_or_stdout)
    else:
        with open(path_or_stdout, "w", encoding="utf-8", newline="") as out:
            write_csv(table, out)
    return len(table)

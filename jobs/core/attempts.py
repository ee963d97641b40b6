"""What outlives an attempt's cluster: its driver log and the nodes it held, on the volume.

A stage's run is one attempt (a KubeRay retry, a resume after a suspension or a rerun is
another). Each writes, beside its experiment, in `<STORAGE_PATH>/<stage>.logs/`:

- `<UTC start>_<attempt id>.log`: everything the driver prints (its own lines, Tune's,
  and the trials' output Ray forwards to it), as `kubectl logs` of the submitter shows it;
- `<UTC start>_<attempt id>.json`: the attempt's record: id, start, last update, exit
  code (none when the attempt was killed, e.g. with its cluster), and every Ray node seen
  alive with its type and how long it was up (sampled every NODE_SAMPLE_S from Ray's node
  table; on Kubernetes a worker node is a worker pod), and every worker node that left
  while the attempt ran, with when and Ray's reason (a reclaimed Spot node, a deleted pod,
  an idle node the autoscaler gave back).

The attempt id is the Ray job's submission id (a RayJob's `status.jobId`), else
`local-<pid>`. File names sort in start order. `--fresh` moves the previous experiment's
attempts into the archived experiment (`move_previous`), so this folder always holds the
attempts of the experiment beside it. Standard library only: `jobs.logs` reads it in the
workstation's client venv.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from jobs.core import cost

LOGS_SUFFIX = ".logs"
NODE_SAMPLE_S = 5.0
# Ray's name for a job's submission id in the metadata the Jobs API gives its driver
# (JobSupervisor: RAY_JOB_CONFIG_JSON_ENV_VAR, JOB_ID_METADATA_KEY).
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
SUBMISSION_ID_KEY = "job_submission_id"
HEAD_RESOURCE = "node:__internal_head__"


def logs_dir(experiment_dir: Path) -> Path:
    """`<STORAGE_PATH>/<stage>.logs`, beside `<STORAGE_PATH>/<stage>`."""
    return experiment_dir.with_name(experiment_dir.name + LOGS_SUFFIX)


def attempt_id(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The Ray job's submission id when the Jobs API started this driver, else local-<pid>."""
    try:
        metadata = json.loads(env.get(JOB_CONFIG_ENV) or "{}").get("metadata") or {}
    except (ValueError, AttributeError):
        metadata = {}
    submission = str(metadata.get(SUBMISSION_ID_KEY) or "")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in submission)
    return safe or f"local-{os.getpid()}"


def node_type(resources: dict[str, float]) -> str:
    """`head`, the accelerator type a node declares (accelerator_type:T4 -> T4), GPU or CPU."""
    if resources.get(HEAD_RESOURCE):
        return "head"
    types = [k.split(":", 1)[1] for k, v in resources.items() if k.startswith("accelerator_type:")]
    if types:
        return sorted(types)[0]
    return "GPU" if resources.get("GPU", 0) > 0 else "CPU"


@dataclass
class NodeSpan:
    type: str
    first_seen: float
    last_seen: float

    @property
    def hours(self) -> float:
        return max(0.0, self.last_seen - self.first_seen) / 3600


@dataclass
class NodeLeft:
    type: str
    at: float  # the first sample that found it dead
    reason: str  # Ray's DeathReasonMessage


@dataclass
class Record:
    """One attempt, as its `.json` file holds it."""

    attempt_id: str
    started: float
    updated: float
    exit_code: int | None = None
    nodes: dict[str, NodeSpan] = field(default_factory=dict)
    left: dict[str, NodeLeft] = field(default_factory=dict)  # worker nodes that went away

    def node_hours(self) -> dict[str, float]:
        hours: dict[str, float] = {}
        for span in self.nodes.values():
            hours[span.type] = hours.get(span.type, 0.0) + span.hours
        return hours

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        nodes = {k: NodeSpan(**v) for k, v in (data.get("nodes") or {}).items()}
        left = {k: NodeLeft(**v) for k, v in (data.get("left") or {}).items()}
        return cls(
            str(data["attempt_id"]),
            float(data["started"]),
            float(data["updated"]),
            data.get("exit_code"),
            nodes,
            left,
        )


@dataclass(frozen=True)
class AttemptFiles:
    log: Path
    record: Path

    @property
    def name(self) -> str:
        return self.log.stem


def attempts(folder: Path) -> list[AttemptFiles]:
    """The attempts in `folder`, oldest first (their names start with the UTC start time)."""
    if not folder.is_dir():
        return []
    return [AttemptFiles(p, p.with_suffix(".json")) for p in sorted(folder.glob("*.log"))]


def read_record(files: AttemptFiles) -> Record | None:
    try:
        return Record.from_json(files.record.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def node_hours(folder: Path) -> tuple[dict[str, float], float, int]:
    """Summed over the folder's attempts: node-hours by node type (head included), the
    attempts' own hours (start to last update), and how many attempts there were."""
    hours: dict[str, float] = {}
    wall = 0.0
    found = attempts(folder)
    for files in found:
        rec = read_record(files)
        if rec is None:
            continue
        wall += max(0.0, rec.updated - rec.started) / 3600
        for kind, h in rec.node_hours().items():
            hours[kind] = hours.get(kind, 0.0) + h
    return hours, wall, len(found)


def move_previous(folder: Path, target: Path, before: float) -> None:
    """Move the files of every attempt that started before `before` (a time.time(), e.g. the
    archived experiment's last write) into `target`: later ones, the running attempt and
    earlier attempts of the same run (a failed retry), stay."""
    for files in attempts(folder):
        record = read_record(files)
        if record is None or record.started >= before:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for item in (files.log, files.record):
            if item.exists():
                item.rename(target / item.name)


class _Tee(io.TextIOBase):
    """A text stream that writes to the terminal's stream and to the attempt's log."""

    def __init__(self, stream: TextIO, log: TextIO, lock: threading.Lock) -> None:
        self._stream, self._log, self._lock = stream, log, lock

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self._to_log(lambda: self._log.write(text))
        return written

    def flush(self) -> None:
        self._stream.flush()
        self._to_log(self._log.flush)

    def _to_log(self, action: Callable[[], object]) -> None:
        """A volume that fails (a stale NFS handle) ends the copy, not the run."""
        with self._lock:
            if self._log.closed:
                return
            try:
                action()
            except OSError:
                self._log.close()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


NodeTable = tuple[dict[str, dict[str, float]], dict[str, str]]


def _node_table() -> NodeTable | None:
    """Ray's node table once this process is connected: the alive nodes' resources, and
    the dead nodes' reasons (DeathReasonMessage)."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    try:
        nodes = ray.nodes()
    except Exception:  # a head going away mid-call: the next sample tries again
        return None
    alive = {n["NodeID"]: n.get("Resources") or {} for n in nodes if n.get("Alive")}
    dead = {
        n["NodeID"]: str(n.get("DeathReasonMessage") or "") for n in nodes if not n.get("Alive")
    }
    return alive, dead


class Attempt:
    """The running attempt: tees stdout/stderr into its log and samples the nodes."""

    def __init__(self, experiment_dir: Path, env: dict[str, str] | None = None) -> None:
        self.folder = logs_dir(experiment_dir)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        self.record = Record(attempt_id(os.environ if env is None else env), now, now)
        self.files = AttemptFiles(
            self.folder / f"{stamp}_{self.record.attempt_id}.log",
            self.folder / f"{stamp}_{self.record.attempt_id}.json",
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Extend the span of every alive node to now, note the worker nodes seen before
        that Ray now lists dead; write the record."""
        alive, dead = _node_table() or ({}, {})
        now = time.time()
        with self._lock:
            for node_id, resources in alive.items():
                span = self.record.nodes.get(node_id)
                if span is None:
                    self.record.nodes[node_id] = NodeSpan(node_type(resources), now, now)
                else:
                    span.last_seen = now
            for node_id, reason in dead.items():
                span = self.record.nodes.get(node_id)
                if span is not None and span.type != "head" and node_id not in self.record.left:
                    self.record.left[node_id] = NodeLeft(span.type, now, reason)
            self.record.updated = now
            self._write()

    def _write(self) -> None:
        tmp = self.files.record.with_name(self.files.record.name + ".tmp")
        tmp.write_text(self.record.to_json())
        tmp.replace(self.files.record)

    def _loop(self) -> None:
        while not self._stop.wait(NODE_SAMPLE_S):
            with suppress(OSError):  # the volume went away; the next sample tries again
                self.sample()

    def finish(self, exit_code: int) -> None:
        self._stop.set()
        if self._thread is not None:
            # A sample stuck on a head that went away must not hold the exit.
            self._thread.join(timeout=NODE_SAMPLE_S)
        if self._thread is None or not self._thread.is_alive():
            self.sample()
        with self._lock:
            self.record.exit_code = exit_code
            self._write()

    def node_hours(self) -> dict[str, float]:
        with self._lock:
            return self.record.node_hours()


_current: Attempt | None = None


def current() -> Attempt | None:
    """The attempt this process is running, if any (outputs.finish reads it)."""
    return _current


@contextmanager
def recorded(experiment_dir: Path) -> Iterator[Attempt]:
    """Run the body as one attempt: its output also goes to the attempt's log, its nodes
    are sampled in the background; call `finish(exit_code)` on the attempt at the end."""
    global _current
    attempt = Attempt(experiment_dir)
    attempt.folder.mkdir(parents=True, exist_ok=True)
    log = attempt.files.log.open("a", buffering=1, encoding="utf-8", errors="replace")
    lock = threading.Lock()
    saved = sys.stdout, sys.stderr
    sys.stdout = _Tee(saved[0], log, lock)  # type: ignore[assignment]
    sys.stderr = _Tee(saved[1], log, lock)  # type: ignore[assignment]
    attempt.sample()
    attempt._thread = threading.Thread(target=attempt._loop, name="attempt-nodes", daemon=True)
    attempt._thread.start()
    _current = attempt
    print(f"[attempt] {attempt.record.attempt_id}: this run's log is {attempt.files.log}")
    try:
        yield attempt
    except BaseException:
        # The traceback Python prints on the way out goes to the terminal only: the log gets
        # it here (a crash is what the log is kept for).
        with lock:
            if not log.closed:
                log.write(traceback.format_exc())
        raise
    finally:
        _current = None
        if attempt.record.exit_code is None:
            attempt.finish(1)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved
        with lock:
            log.close()


def describe(files: AttemptFiles, number: int) -> str:
    """One line of `make logs`' list."""
    rec = read_record(files)
    if rec is None:
        return f"{number:>3}  {files.name}  (no record)"
    seconds = max(0.0, rec.updated - rec.started)
    took = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    ended = (
        f"exit {rec.exit_code}"
        if rec.exit_code is not None
        else "did not finish (killed, or its cluster deleted)"
    )
    workers = cost.hours_text({k: v for k, v in rec.node_hours().items() if k != "head"}, empty="")
    nodes = f", worker node-hours {workers}" if workers else ""
    left = f", {len(rec.left)} worker node(s) left while it ran" if rec.left else ""
    return f"{number:>3}  {files.name}  {took}, {ended}{nodes}{left}"

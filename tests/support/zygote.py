"""`python -m <module>` without paying for the imports each time.

A bad-input case ends in the first second of a stage's `main()`, but `python -m jobs.tune`
spends about 5 s importing torch and Ray first. The zygote is a Python process, started with
the same interpreter, working directory and environment a plain run has, that imports what
the entrypoint modules import once and then forks one child per run: the child takes the run's
environment and arguments, runs the module as `__main__` (as `python -m` does) with its own
stdout and stderr, and exits with the module's exit status. What the test sees is a real
process's exit code and output streams, about 0.1 s after asking.

Protocol: one JSON request per line on the zygote's stdin, one JSON reply per line on its
stdout (the child's streams go to files named in the request).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become `python -m module args` with the request's environment."""
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for source, target in ((stdin, 0), (out, 1), (err, 2)):
        os.dup2(source, target)
    sys.argv = [request["module"], *request["args"]]
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
    except BaseException:  # what the interpreter would do: print it, exit 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(modules: Sequence[str]) -> None:
    """The zygote's loop: import `modules`, then fork a child for every request."""
    for module in modules:
        __import__(module)
    # Forget the entrypoints themselves (their imports stay): `python -m` runs a module's
    # code fresh as __main__, and runpy warns about a module it finds already imported.
    for module in modules:
        del sys.modules[module]
        package, _, name = module.rpartition(".")
        if package and hasattr(sys.modules[package], name):
            delattr(sys.modules[package], name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


class Zygote:
    """The test side: start the zygote, then `run` modules in forked children."""

    def __init__(self, modules: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.cwd = cwd
        self.streams = Path(tempfile.mkdtemp(prefix="rtk-zygote-"))  # runs' output, by default
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.zygote", *modules],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        ready = self.proc.stdout.readline()
        assert json.loads(ready or "{}").get("ready"), "the zygote did not start"

    def run(
        self, module: str, args: Sequence[str], env: Mapping[str, str], work: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`python -m module args` in a forked child; its streams are kept in `work` (default:
        a folder of the zygote's own, outside anything a test checks for writes)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        work = work or self.streams
        stdout, stderr = work / "zygote.stdout", work / "zygote.stderr"
        request = {
            "module": module,
            "args": list(args),
            "env": dict(env),
            "cwd": str(self.cwd),
            "stdout": str(stdout),
            "stderr": str(stderr),
        }
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return subprocess.CompletedProcess(
            [sys.executable, "-m", module, *args],
            reply["returncode"],
            stdout.read_text(),
            stderr.read_text(),
        )

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.streams, ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1:])

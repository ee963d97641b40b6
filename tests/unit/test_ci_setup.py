"""`make test` sets up a fresh machine itself: .ci/system-packages installs the Debian
packages the tests need where this user may, and otherwise names them in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.runs import REPO

SCRIPT = REPO / ".ci" / "system-packages"


def _fake_bin(tmp_path: Path, installed: bool) -> Path:
    """A PATH folder whose dpkg reports every package (not) installed, and no sudo."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "dpkg").write_text(f"#!/bin/sh\nexit {0 if installed else 1}\n")
    (folder / "dpkg").chmod(0o755)
    return folder


def _run(path: str, as_nobody: bool) -> subprocess.CompletedProcess[str]:
    setpriv = str(shutil.which("setpriv"))
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    env = {"PATH": path, "HOME": "/nonexistent"}
    return subprocess.run(
        [*prefix, "/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True
    )


def test_every_package_there_is_a_quiet_success(tmp_path) -> None:
    proc = _run(f"{_fake_bin(tmp_path, installed=True)}", as_nobody=False)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to act as nobody"
)
def test_a_user_who_may_not_install_gets_one_line_naming_the_packages(tmp_path) -> None:
    # Somewhere nobody can reach (pytest's tmp_path is private to root).
    shared = Path(tempfile.mkdtemp(prefix="rtk-ci-"))
    shared.chmod(0o755)
    folder = _fake_bin(shared, installed=False)
    proc = _run(str(folder), as_nobody=True)  # no sudo on that PATH
    assert proc.returncode == 2, proc
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: the tests need these packages; install them with: sudo ")
    assert "dataset-fashion-mnist" in line and "podman" in line and proc.stdout == ""
    assert "python3-venv" in line  # `python3 -m venv` needs it on Debian
    shutil.rmtree(shared)


def test_without_dpkg_it_says_what_to_install_in_one_line(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(str(empty), as_nobody=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: not a Debian-based system") and "podman" in line


def test_make_test_runs_it_first_and_ci_runs_make_test() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "\ntest: system-packages lint " in makefile
    assert "\n\t.ci/system-packages\n" in makefile
    assert 'make test VENV="$VENV"' in (REPO / ".ci" / "run").read_text()


def fake_python(tmp_path: Path, version: tuple[int, int, int]) -> Path:
    """A `python` whose `-c` code sees sys.version_info and sys.version as `version`."""
    dotted = ".".join(map(str, version))
    fake = tmp_path / f"python{version[0]}.{version[1]}"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -c ]; then shift; exec ' + sys.executable + ' -c "import sys; '
        f"code = sys.argv.pop(1); sys.version_info = {version}; sys.version = '{dotted}'; "
        'exec(code)" "$@"; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize(
    ("target", "venv_var", "version", "message"),
    [
        # The dev venv's lock is for 3.11 exactly: a 3.12 gets one error line naming the fix.
        (
            "install",
            "VENV",
            (3, 12, 0),
            "error: the lock is for Python 3.11; {fake} is 3.12.0: pass PYTHON=python3.11",
        ),
        # The client's jobs/kube/render.py reads TOML with tomllib (3.11): a 3.10 is refused.
        (
            "client",
            "CLIENT_VENV",
            (3, 10, 14),
            "error: the client needs Python 3.11 or newer (jobs/kube/render.py reads TOML with "
            "tomllib); {fake} is 3.10.14: pass PYTHON=python3.11",
        ),
    ],
    ids=["venv-3.12", "client-3.10"],
)
def test_a_venv_refuses_a_python_it_cannot_use(
    tmp_path, target: str, venv_var: str, version: tuple[int, int, int], message: str
) -> None:
    # One error line naming the fix, and no venv made.
    fake = fake_python(tmp_path, version)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "-s", target, f"{venv_var}={venv}", f"PYTHON={fake}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and not venv.exists(), proc
    assert proc.stderr.splitlines()[0] == message.format(fake=fake), proc.stderr

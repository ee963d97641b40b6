#!/usr/bin/env python3
"""The dependency lock (.ci/lock/, written by `make lock` with uv) as the installs need it.

    deps.py --hash                 names the virtualenv: a hash of the dev lock, so a new lock
                                   builds a new venv and an unchanged one reuses it
    deps.py --pin NAME             the locked version of one package: the one reader of the
                                   pins for the Makefile, the renderer and the image build
    deps.py --without-torch LOCK   LOCK less torch, torchvision and the CUDA libraries PyPI's
                                   torch pulls in: for an image whose torch of the same
                                   version comes from PyTorch's own index (cu126 or cpu)

dev.txt holds runtime + dev packages; runtime.txt the runtime ones at the same versions.
Both pin every package with its hashes; installs use them with --require-hashes --no-deps,
so nothing else resolves versions.
"""

import hashlib
import re
import sys
from pathlib import Path

LOCK = Path(__file__).parent / "lock"
# PyPI's torch is a CUDA 13 build: these come with it and not with PyTorch's cu126/cpu wheels.
TORCH_STACK = re.compile(r"(torch|torchvision|triton|nvidia-.*|cuda-.*)")


def blocks(text: str) -> list[tuple[str | None, str]]:
    """The lock as (package name or None, lines) blocks: one per requirement."""
    out: list[tuple[str | None, str]] = []
    for line in text.splitlines(keepends=True):
        match = re.match(r"([A-Za-z0-9_.-]+)==", line)
        if match or not out:
            out.append((match.group(1).lower() if match else None, line))
        else:
            name, body = out[-1]
            out[-1] = (name, body + line)
    return out


def pin(name: str) -> str:
    """The locked version of `name` (the lock agrees with pyproject.toml; a test checks it)."""
    text = (LOCK / "runtime.txt").read_text()
    match = re.search(rf"^{re.escape(name)}==(\S+)", text, re.M | re.I)
    if match is None:
        raise SystemExit(f"error: {name} is not in {LOCK / 'runtime.txt'}")
    return match.group(1)


def main(argv: list[str]) -> int:
    if argv == ["--hash"]:
        digest = hashlib.sha256((LOCK / "dev.txt").read_bytes()).hexdigest()
        print(f"py{sys.version_info.major}{sys.version_info.minor}-{digest[:12]}")
    elif len(argv) == 2 and argv[0] == "--pin":
        print(pin(argv[1]))
    elif len(argv) == 2 and argv[0] == "--without-torch":
        kept = [
            body
            for name, body in blocks(Path(argv[1]).read_text())
            if not name or not TORCH_STACK.fullmatch(name)
        ]
        print("".join(kept), end="")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

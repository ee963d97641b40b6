#!/usr/bin/env python3
"""Print the pinned requirements of pyproject.toml (runtime + dev, or --runtime), or --hash.

The hash names the virtual environment (`make install`, `.ci/run`), so a change of pins
builds a new one and an unchanged set reuses the old one.
"""

import hashlib
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
runtime = list(project["dependencies"])
requirements = [*runtime, *project["optional-dependencies"]["dev"]]
if sys.argv[1:] == ["--runtime"]:
    print("\n".join(runtime))
elif sys.argv[1:] == ["--hash"]:
    digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()
    print(f"py{sys.version_info.major}{sys.version_info.minor}-{digest[:12]}")
else:
    print("\n".join(requirements))

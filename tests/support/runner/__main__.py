"""`python -m tests.support.runner MANIFEST [flags]`: one RayJob in podman (make e2e-podman)."""

import sys

from tests.support.runner.cli import main

sys.exit(main())

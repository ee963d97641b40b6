"""The podman runner: a RayJob run as KubeRay, a scheduler, a node autoscaler and Kueue would.

`python -m tests.support.runner MANIFEST` (make e2e-podman) runs one; tests/e2e drives it.
"""

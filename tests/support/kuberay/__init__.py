"""What the KubeRay v1.7.0 operator does with our manifests, ported from its source.

Each function names the Go function it follows (`../shared/kuberay-v1.7.0/src/`). The
tests use these rules to refuse what the controller would refuse, and the podman e2e
(tests/support/runner/) uses them to build containers the way KubeRay builds pods.
"""

"""What builds and checks the Kubernetes side of the project.

Manifests rendered from k8s/templates and k8s/values (render), what a stage may cost
(estimate), the kube-scheduler's filters (scheduling), a cluster's preflight (preflight) and
the smoke RayJob's cold start (smoke_events). Standard library, PyYAML and Jinja2 only: the
client venv runs it.
"""

"""ray-tune-k8s: the walkthrough's five stages as Ray Tune jobs (see README.md)."""

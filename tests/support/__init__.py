"""What the tests share: paths and runners (runs), small real IDX files (idx), the
committed manifests (manifests), a model of the KubeRay operator (kuberay), pod security."""

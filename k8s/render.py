"""Render the manifests with Jinja2: one template per kind of document (k8s/templates/) and
one values file per variant (k8s/values/), in the spirit of a Helm chart.

    python k8s/render.py            # write the manifests (make manifests)
    python k8s/render.py --check    # exit 1 if a committed manifest differs (tests, CI)
    DIGESTS=1 python k8s/render.py  # images by digest, from k8s/values/digests.yaml, which
                                    # `make push` records (make manifests DIGESTS=1)

Outputs: from values/t4.yaml (cloud T4 node pools) raycluster.yaml, rayjob-<stage>.yaml and
results-reader.yaml; from values/kind.yaml (kind, make e2e-podman) kind/rayjob-<stage>.yaml.
The stages and their facts (deadline, kind workers) come from the registry (jobs/registry.py
and each jobs/<stage>.py); the Ray version and the image tags from the pins (.ci/deps.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

K8S = Path(__file__).resolve().parent
REPO = K8S.parent
sys.path.insert(0, str(REPO))
from jobs import registry  # noqa: E402  (after the repository is on the path)

IMAGE_REPO = os.environ.get("IMAGE_REPO", "ghcr.io/ray-tune-k8s/ray-tune-k8s")
DIGESTS = K8S / "values" / "digests.yaml"


@cache
def versions() -> dict[str, str]:
    """The project's version, and Ray's from the one reader of the pins (.ci/deps.py)."""
    spec = importlib.util.spec_from_file_location("deps", REPO / ".ci" / "deps.py")
    assert spec is not None and spec.loader is not None
    deps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deps)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"project": project["version"], "ray": deps.pin("ray")}


def image(variant: str, by_digest: bool | None = None) -> str:
    """The image reference for a variant: by tag (the default, also for local builds), or by
    the digest `make push` recorded, so that a node runs exactly the image that was pushed."""
    if by_digest if by_digest is not None else os.environ.get("DIGESTS") == "1":
        recorded = yaml.safe_load(DIGESTS.read_text()) if DIGESTS.exists() else {}
        if variant not in (recorded or {}):
            raise SystemExit(f"error: no {variant} digest in {DIGESTS}: run `make push` first")
        return recorded[variant]
    v = versions()
    return f"{IMAGE_REPO}:{v['project']}-ray{v['ray']}-{variant}"


def _flow(value: Any) -> str:
    """A mapping or list as one YAML flow line, the style the templates use."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip()


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(K8S / "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=False,
)
ENV.filters["flow"] = _flow


def values(variant: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / "values" / f"{variant}.yaml").read_text())


def _render(template: str, v: dict[str, Any], **context: Any) -> str:
    base = {"v": v, "ray_version": versions()["ray"], "image": image(v["image_variant"])}
    return ENV.get_template(template).render(**base, **context)


def _cluster_spec(v: dict[str, Any], stage: str | None, stage_workers: int | None = None) -> str:
    return _render("cluster-spec.yaml.j2", v, stage=stage, stage_workers=stage_workers).strip()


def render() -> dict[Path, str]:
    """Every manifest's text by path, for every stage of the registry."""
    t4, kind = values("t4"), values("kind")
    files = {
        K8S / "raycluster.yaml": _render(
            "raycluster.yaml.j2", t4, cluster_spec=_cluster_spec(t4, None)
        ),
        K8S / "results-reader.yaml": _render("results-reader.yaml.j2", t4),
    }
    for v, folder, storage in (
        (t4, K8S, "k8s/storage.yaml"),
        (kind, K8S / "kind", "k8s/kind/storage.yaml"),
    ):
        for name in registry.names():
            path = folder / f"rayjob-{name}.yaml"
            facts = registry.load(name).kubernetes
            files[path] = _render(
                "rayjob.yaml.j2",
                v,
                stage=name,
                module=registry.STAGES[name],
                deadline_s=v["deadline_s"] or facts.deadline_s,
                path=str(path.relative_to(REPO)),
                storage=storage,
                cluster_spec=_cluster_spec(v, name, facts.kind_workers),
            )
    return files


def main(argv: list[str]) -> int:
    files = render()
    if argv == ["--check"]:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)} (run `make manifests`)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Render the Kubernetes manifests of every variant with Jinja2.

One template per kind of document (k8s/templates/) and one values file per variant
(k8s/values/<variant>.yaml: a cloud, or kind), in the spirit of a Helm chart. Adding a
variant is a new values file: no code, no template.

    python -m jobs.kube.render            # write the manifests (make manifests)
    python -m jobs.kube.render --check    # exit 1 if a committed manifest differs (tests, CI)
    python -m jobs.kube.render --folder VARIANT   # where its manifests go (the Makefile)

Outputs per variant: raycluster.yaml, rayjob-<stage>.yaml, rayjob-smoke.yaml (make smoke),
storage.yaml, networkpolicy.yaml and results-reader.yaml, into k8s/ for the default variant
(`default: true`) and into k8s/<variant>/ for the others.

Images: by the digest `make push` recorded in image/digests.yaml where it has one, else by
tag. DIGESTS=0 forces tags, DIGESTS=1 refuses to render without a digest.
IMAGE_PULL_SECRET=<name> adds that pull secret to every pod (values: image_pull_secret).
COLD_START=<smoke.json> puts the T4 cold start `make smoke` measured, doubled, in place of the
values file's assumed one (cold_start_s.t4), for the variant it ran on.
QUEUE=<local queue> labels every RayJob for Kueue (kueue.x-k8s.io/queue-name); each values
file's `kueue` says what else changes then (k8s/README.md: Kueue). Empty: no label, as committed.
The stages and their facts (deadline, fixed workers) come from the registry, read from the
stage modules (which import no Ray Tune and no torch); the Ray version from the pins.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from jobs import registry, smoke

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
VALUES = K8S / "values"

IMAGE_REPO = os.environ.get("IMAGE_REPO", "ghcr.io/ray-tune-k8s/ray-tune-k8s")
DIGESTS = REPO / "image" / "digests.yaml"
# Per variant: what each template writes.
DOCUMENTS = {
    "raycluster.yaml": "raycluster.yaml.j2",
    "results-reader.yaml": "results-reader.yaml.j2",
    "storage.yaml": "storage.yaml.j2",
    "networkpolicy.yaml": "networkpolicy.yaml.j2",
}


class RenderError(Exception):
    """A values file or the digests that cannot render: one `error:` line, exit 2."""


QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The queue name must be a label value (apimachinery's IsValidLabelValue: at most 63
# characters) and a DNS-1123 subdomain, which Kueue's webhook checks the label against
# (ValidateQueueName, pkg/controller/jobframework/validation.go): together, lower-case
# letters, digits, '-' and '.', starting and ending with a letter or digit.
# A DNS-1123 subdomain: dot-separated labels of lower-case letters, digits and inner dashes.
_QUEUE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def queue() -> str | None:
    """QUEUE: the Kueue LocalQueue every RayJob is labelled for, or None (no Kueue)."""
    name = os.environ.get("QUEUE", "")
    if not name:
        return None
    if len(name) > 63 or not _QUEUE_NAME.fullmatch(name):
        raise RenderError(
            f"QUEUE={name!r} is not a Kueue LocalQueue name: a Kubernetes label value of at "
            "most 63 lower-case letters, digits, '-' and '.', starting and ending with a "
            "letter or digit"
        )
    return name


def gpus_at_once(stage: str, v: dict[str, Any]) -> int:
    """How many T4 workers the stage can keep busy at once at its walkthrough size (or the
    variant's env_vars), at most the worker group's maxReplicas: its trials at once
    (TUNE_NUM_SAMPLES, capped by TUNE_MAX_CONCURRENT; one for a stage without Tune) times
    the GPUs one trial takes (Kubernetes.kind_workers: the train stage's two Train workers;
    GPUS_PER_TRIAL's share where the variant sets one: 0.5 packs two trials per T4). Under
    Kueue without elastic jobs this is the fixed worker count it admits."""
    declared = registry.load(stage)
    env = v["env_vars"]
    trials = 1
    if "TUNE" in {scope.name for scope in declared.scopes}:
        trials = int(env.get("TUNE_NUM_SAMPLES", declared.defaults.get("num_samples", 1)))
        cap = env.get("TUNE_MAX_CONCURRENT", declared.defaults.get("max_concurrent"))
        trials = min(trials, int(cap)) if cap else trials
    share = float(env.get("GPUS_PER_TRIAL", 1)) if getattr(declared.run, "gpu_share", True) else 1
    per_trial = int(declared.kubernetes.kind_workers) * share
    return max(1, min(int(v["worker"]["max_replicas"]), math.ceil(trials * per_trial)))


@cache
def versions() -> dict[str, str]:
    """The project's version, and Ray's as pyproject.toml pins it (the lock agrees with it:
    tests/unit/test_dependency_lock.py; .ci/deps.py reads the lock for the installs)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (ray,) = {
        d.split("==", 1)[1] for d in project["dependencies"] if re.match(r"ray(\[.*\])?==", d)
    }
    return {"project": project["version"], "ray": ray}


def image(image_variant: str, digests: str | None = None) -> str:
    """The image reference for `gpu` or `cpu`: by the digest `make push` recorded, so that a
    node runs exactly the image that was pushed (never a stale one cached under a reused
    tag), or by tag where none is recorded (local builds, kind) or DIGESTS=0."""
    mode = os.environ.get("DIGESTS", "") if digests is None else digests
    v = versions()
    tag = f"{IMAGE_REPO}:{v['project']}-ray{v['ray']}-{image_variant}"
    if mode == "0":
        return tag
    recorded = (yaml.safe_load(DIGESTS.read_text()) if DIGESTS.exists() else None) or {}
    ref = recorded.get(image_variant)
    if ref and ref.split("@", 1)[0] == tag.rsplit(":", 1)[0]:
        return str(ref)
    if mode == "1":
        raise RenderError(
            f"no {image_variant} digest for {IMAGE_REPO} in {DIGESTS}: run `make push` first"
        )
    return tag


def variants() -> list[str]:
    """Every values file's variant, the default first."""
    names = sorted(p.stem for p in VALUES.glob("*.yaml"))
    defaults = [n for n in names if values(n).get("default")]
    if len(defaults) != 1:
        raise RenderError(f"exactly one values file must say `default: true`, found {defaults}")
    return defaults + [n for n in names if n != defaults[0]]


@cache
def values(variant: str) -> dict[str, Any]:
    path = VALUES / f"{variant}.yaml"
    if not path.is_file():
        raise RenderError(f"no values file {path.relative_to(REPO)}; variants: {variants()}")
    try:
        v = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise RenderError(f"{path.relative_to(REPO)} is not YAML: {first}") from None
    if not isinstance(v, dict) or v.get("variant") != variant:
        raise RenderError(f"{path.relative_to(REPO)} must say `variant: {variant}`")
    return v


# COLD_START=<smoke.json> (make manifests): a T4 cold start `make smoke` measured replaces
# the values file's assumed one for the variant it ran on, with this factor of headroom
# (one measurement; pulls and node boots vary), rounded up to whole minutes.
COLD_START_HEADROOM = 2


def measured(variant: str, v: dict[str, Any]) -> dict[str, Any]:
    """The variant's values with COLD_START's measured T4 cold start, where it names a smoke
    report of this variant (measured over assumed); the values as they are otherwise."""
    source = os.environ.get("COLD_START", "")
    if not source:
        return v
    try:
        report = json.loads(Path(source).read_text())
        ran_on, seconds = report["variant"], report["timeline"]["gpu_worker_joined"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RenderError(
            f"COLD_START={source} is not a smoke report (make smoke): {err}"
        ) from None
    if ran_on != variant:
        return v
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise RenderError(f"COLD_START={source}: no T4 worker joined in that smoke run")
    minutes = -(-seconds * COLD_START_HEADROOM // 60)
    cold = {**v["cold_start_s"], "t4": int(minutes * 60)}
    note = f"measured {seconds:.0f} s by make smoke ({source}), x{COLD_START_HEADROOM}"
    return {**v, "cold_start_s": cold, "cold_start_note": note}


def folder(variant: str) -> Path:
    """Where a variant's manifests go: k8s/ for the default, k8s/<variant>/ otherwise."""
    return K8S if values(variant).get("default") else K8S / variant


def _flow(value: Any) -> str:
    """A mapping or list as one YAML flow line, the style the templates use."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()  # a scalar ends its document


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(K8S / "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=False,
)
ENV.filters["flow"] = _flow
ENV.filters["combine"] = lambda a, b: {**a, **b}


def node_prices(v: dict[str, Any]) -> str | None:
    """The NODE_PRICES setting (declared in jobs/core/settings.py, parsed by
    jobs/core/parsers.py) for the variant's stated prices, or None where it states no GPU
    node price."""
    prices = v["prices"]
    if all(p is None for p in prices["t4_node"].values()):
        return None
    stated = {"gpu_node": prices["t4_node"], "head_node": prices["head_node"]}
    return json.dumps({**stated, "source": prices["source"]}, separators=(",", ":"))


def _context(v: dict[str, Any]) -> dict[str, Any]:
    ray = versions()["ray"]
    project_image = image(v["image_variant"])
    client = v.get("client_image")
    return {
        "v": v,
        "node_prices": node_prices(v),
        "ray_version": ray,
        "image": project_image,
        "client_image": client.format(ray=ray) if client else project_image,
        "pull_secret": os.environ.get("IMAGE_PULL_SECRET") or v.get("image_pull_secret"),
        "queue": queue(),
    }


def _render(template: str, context: dict[str, Any], **extra: Any) -> str:
    return ENV.get_template(template).render(**context, **extra)


def render_variant(variant: str, changed: dict[str, Any] | None = None) -> dict[Path, str]:
    """The variant's files by path; `changed`: values that replace the file's (a test's
    `spot: true`, as a user would edit it)."""
    v = measured(variant, {**values(variant), **(changed or {})})
    out = folder(variant)
    context = _context(v)

    def rel(name: str) -> str:
        return str((out / name).relative_to(REPO))

    elastic = bool(v["kueue"]["elastic"])
    if elastic and not v["autoscaling"]:
        raise RenderError(f"k8s/values/{variant}.yaml: kueue.elastic needs autoscaling: true")
    # Under Kueue, an autoscaling variant's RayJobs either keep the autoscaler as elastic
    # jobs, or get a fixed worker count with the autoscaler off (values: kueue).
    kueue_fixed = bool(context["queue"]) and v["autoscaling"] and not elastic

    def cluster_spec(
        stage: str | None, workers: int | None = None, kueue_workers: int | None = None
    ) -> str:
        return _render(
            "cluster-spec.yaml.j2",
            context,
            stage=stage,
            stage_workers=workers,
            autoscaling=v["autoscaling"] and not kueue_workers,
            kueue_workers=kueue_workers,
        )

    files = {
        out / name: _render(template, context, path=rel(name), cluster_spec=cluster_spec(None))
        for name, template in DOCUMENTS.items()
    }
    # Every stage's RayJob, and the smoke check's (jobs/smoke.py: not a stage; one GPU worker).
    jobs = {name: registry.STAGES[name] for name in registry.names()} | {smoke.NAME: smoke.MODULE}
    for name, module in jobs.items():
        facts = (
            registry.kubernetes_facts(name)
            if name in registry.STAGES
            else {"deadline_s": smoke.DEADLINE_S, "kind_workers": 1}
        )
        stage_deadline = int(facts["deadline_s"])
        kueue_workers = (
            (gpus_at_once(name, v) if name in registry.STAGES else 1) if kueue_fixed else None
        )
        files[out / f"rayjob-{name}.yaml"] = _render(
            "rayjob.yaml.j2",
            context,
            stage=name,
            smoke=name == smoke.NAME,
            module=module,
            stage_deadline_s=stage_deadline,
            deadline_s=v["deadline_s"] or stage_deadline + int(v["cold_start_s"]["t4"]),
            path=rel(f"rayjob-{name}.yaml"),
            storage=rel("storage.yaml"),
            kueue_fixed=kueue_fixed,
            kueue_elastic=bool(context["queue"]) and elastic,
            cluster_spec=cluster_spec(
                name, int(facts.get("kind_workers", 1)), kueue_workers=kueue_workers
            ).strip(),
        )
    return files


def render() -> dict[Path, str]:
    """Every manifest's text by path: every variant, every stage of the registry."""
    files: dict[Path, str] = {}
    for variant in variants():
        files |= render_variant(variant)
    return files


def helm_values() -> dict[Path, str]:
    """The Helm values files of the add-ons a cloud does not install itself (not manifests):
    NVIDIA's device plugin where the values file names a chart (make device-plugin)."""
    return {
        folder(variant) / "device-plugin.values.yaml": _render(
            "device-plugin.values.yaml.j2", _context(values(variant))
        )
        for variant in variants()
        if values(variant)["device_plugin"]["chart"]
    }


SIDECAR_DEFAULT_CPU = "500m"
# Image streaming where the cloud streams what the manifests pull: GKE streams Artifact
# Registry images by digest too. AKS's artifact streaming resolves tags only (learn.microsoft
# .com/azure/aks/artifact-streaming-overview), and make manifests names the image by digest;
# EKS's SOCI needs a snapshotter on the AMI and an index pushed with the image.
IMAGE_STREAMING = {"gke"}


def _millicores(q: Any) -> int:
    text = str(q)
    return int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)


def head_node_budget(variant: str, v: dict[str, Any]) -> list[tuple[str, int]]:
    """What the one CPU node holds at once, in millicores of CPU requested: the head and its
    autoscaler sidecar, the submitter, the results reader (from the rendered manifests of the
    stage with the most there, every stage's head being the same) and the cluster's own pods
    (values nodes.head.system_pods). cloud-up prints it beside the node's allocatable."""
    files = render_variant(variant)
    (job,) = yaml.safe_load_all(files[folder(variant) / "rayjob-asha.yaml"])
    (reader,) = yaml.safe_load_all(files[folder(variant) / "results-reader.yaml"])

    def asked(containers: list[dict[str, Any]]) -> int:
        return sum(_millicores(c["resources"]["requests"]["cpu"]) for c in containers)

    cluster = job["spec"]["rayClusterSpec"]
    options = cluster.get("autoscalerOptions") or {}
    # KubeRay's own requests for a sidecar whose resources are unset (preflight's
    # AUTOSCALER_DEFAULT: 500m, 512Mi).
    sidecar = options.get("resources", {}).get("requests", {"cpu": SIDECAR_DEFAULT_CPU})
    return [
        ("head", asked(cluster["headGroupSpec"]["template"]["spec"]["containers"])),
        ("autoscaler sidecar", _millicores(sidecar.get("cpu", 0))),
        ("submitter", asked(job["spec"]["submitterPodTemplate"]["spec"]["containers"])),
        ("results reader", asked(reader["spec"]["containers"])),
        ("the cluster's own pods", _millicores(v["nodes"]["head"]["system_pods"]["cpu"])),
    ]


def cloud_scripts() -> dict[Path, str]:
    """Per cloud (a values file with a `cloud` section): `make cloud-up`/`cloud-down`'s script,
    k8s/<variant>/cloud.sh from k8s/templates/cloud-<variant>.sh.j2, and EKS's eksctl config."""
    files: dict[Path, str] = {}
    for variant in variants():
        v = values(variant)
        if not v.get("cloud"):
            continue
        if v["cloud"].get("image_streaming") and variant not in IMAGE_STREAMING:
            raise RenderError(
                f"k8s/values/{variant}.yaml: cloud.image_streaming: true is not offered for "
                f"{v['title']} here (its streaming would not apply to the digest-pinned image, "
                "or needs set-up cloud-up does not do); set it false"
            )
        out = folder(variant)
        budget = head_node_budget(variant, v)
        context = _context(v) | {
            "c": v["cloud"],
            "folder": str(out.relative_to(REPO)),
            "lib": os.path.relpath(K8S / "bin" / "cloud-lib.sh", out),
            "head_budget": " + ".join(f"{what} {m}m" for what, m in budget)
            + f" = {sum(m for _, m in budget)}m of {v['nodes']['head']['allocatable']['cpu']}"
            " allocatable",
        }
        files[out / "cloud.sh"] = _render(f"cloud-{variant}.sh.j2", context)
        for name in v["cloud"].get("configs", []):  # e.g. eksctl's ClusterConfig
            files[out / name] = _render(f"{name}.j2", context)
    return files


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["--folder"] and len(argv) == 2:
            print(folder(argv[1]).relative_to(REPO) if folder(argv[1]) != K8S else "k8s")
            return 0
        if argv not in ([], ["--check"]):
            print(__doc__, file=sys.stderr)
            return 2
        files = render() | helm_values() | cloud_scripts()
    except RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)} (run `make manifests`)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(files)} manifests for {', '.join(variants())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

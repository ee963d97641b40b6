# A stand-in for rayproject/ray:<RAY_VERSION>-py311-cpu, for machines that cannot pull it.
# It gives image/Dockerfile what the official base gives it, and nothing more:
#   - the `ray` user, uid 1000, primary group `users` (gid 100), home /home/ray;
#   - a Python 3.11 environment on PATH that this user owns and can pip-install into;
#   - Ray at the pinned version with its [default] extras (dashboard, Jobs API, `ray` CLI);
#   - wget, which KubeRay's probes call in every Ray container.
# Built by image/build.sh (make image-base) FROM a Debian 12 root made by debootstrap.
ARG ROOTFS=localhost/ray-tune-k8s/debian:bookworm
FROM ${ROOTFS}
ARG RAY_VERSION=2.60.0
# A folder of wheels mounted into the build (podman build --volume), or empty to use PyPI.
ARG PIP_WHEELS=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN useradd --uid 1000 --gid 100 --create-home --shell /bin/bash ray
USER 1000:100
WORKDIR /home/ray
# The official image keeps its Python under the user's home, on PATH, writable by it.
ENV HOME=/home/ray \
    PATH=/home/ray/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
# Ray is pinned by the RAY_VERSION argument.
# hadolint ignore=DL3013
RUN python3 -m venv /home/ray/python \
 && pip install --no-cache-dir --disable-pip-version-check \
      ${PIP_WHEELS:+--no-index --find-links "$PIP_WHEELS"} "ray[default]==${RAY_VERSION}" \
 && ray --version

# The image every Kubeflow step of the pipeline runs in (kubeflow/kubeflow_v2_runner.py
# --container-image). It is the environment the tests run in, rebuilt: scripts/env.sh
# makes a Debian 13 root filesystem with Debian's python3 (3.13), a venv in /venv and
# `pip install -r requirements.lock`; this does the same, then installs the project.
#
#   docker build -t REGISTRY/cns-vaegan:0.1.0 . && docker push REGISTRY/cns-vaegan:0.1.0
#
# scripts/build_image.sh does it on a bare Debian host: installs and starts Docker, makes
# the base image where no registry is reachable, passes the host's extra CA certificates.
#
# Steps run `python -m cns_vaegan.kubeflow.container_entrypoint` (TFX's Kubeflow V2
# entrypoint behind a wrapper; the command the runner writes into the spec), found through
# PATH in /venv.

# The Debian both stages start from: the registry's by default; any image of the same
# release works (scripts/build_image.sh makes one with debootstrap where no registry is
# reachable, under this name).
ARG BASE_IMAGE=debian:trixie-slim

# ---- build: compilers for the one sdist in the lock (pyfarmhash), then the venv
FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# PEM text of extra CA certificates (a TLS-intercepting proxy's) for pip's HTTPS, e.g.
# --build-arg EXTRA_CA_CERTS="$(cat proxy-ca.crt)". Build stage only: the runtime image
# keeps Debian's CA store.
ARG EXTRA_CA_CERTS=
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra-ca.crt \
      && update-ca-certificates; \
    fi
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir --upgrade pip
# The locks alone first, so that a code change does not reinstall the dependencies.
# CUDA=1 (default) adds tensorflow[and-cuda]'s NVIDIA libraries (requirements-gpu.lock,
# ~3 GB) so the Trainer's MirroredStrategy sees the pod's GPUs; --build-arg CUDA=0 for a
# CPU-only image.
ARG CUDA=1
COPY requirements.lock requirements-gpu.lock /tmp/
RUN /venv/bin/pip install --no-cache-dir -r /tmp/requirements.lock \
 && if [ "$CUDA" = 1 ]; then /venv/bin/pip install --no-cache-dir -r /tmp/requirements-gpu.lock; fi

# ---- runtime: the same Debian with the venv, without compilers
FROM ${BASE_IMAGE}
# fonts-cns11643-kai: the TW-Kai font that glyphs are rendered with (data/render_glyphs.py).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates fonts-cns11643-kai procps \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /venv /venv
# TF_ENABLE_ONEDNN_OPTS=1: TensorFlow's oneDNN CPU kernels on every CPU, not only those with
# AVX-512 VNNI/BF16 (on AVX2 the others train several times slower: docs/generated/cpu_kernels.md).
ENV PATH=/venv/bin:$PATH \
    VIRTUAL_ENV=/venv \
    PYTHONUNBUFFERED=1 \
    TF_ENABLE_ONEDNN_OPTS=1
# The project last and here, so a code change rebuilds only this small layer (not the
# venv copy above). Pure Python: no compiler needed.
COPY . /src
RUN /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation /src
# No ENTRYPOINT: Kubeflow gives each step its command. Locally: docker run IMAGE python -m ...
CMD ["python", "-c", "import cns_vaegan.pipeline.pipeline, tfx; print('cns-vaegan image, tfx', tfx.__version__)"]

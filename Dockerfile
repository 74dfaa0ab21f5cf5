# The image every Kubeflow step of the pipeline runs in (kubeflow/kubeflow_v2_runner.py
# --container-image). It is the environment the tests run in, rebuilt: scripts/env.sh
# makes a Debian 13 root filesystem with Debian's python3 (3.13), a venv in /venv and
# `pip install -r requirements.lock`; this does the same, then installs the project.
#
#   docker build -t REGISTRY/cns-vaegan:0.1.0 . && docker push REGISTRY/cns-vaegan:0.1.0
#
# Steps run `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`
# (the command KubeflowV2DagRunner writes into the spec), found through PATH in /venv.

# ---- build: compilers for the one sdist in the lock (pyfarmhash), then the venv
FROM debian:trixie-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir --upgrade pip
# The locks alone first, so that a code change does not reinstall the dependencies.
# CUDA=1 (default) adds tensorflow[and-cuda]'s NVIDIA libraries (requirements-gpu.lock,
# ~3 GB) so the Trainer's MirroredStrategy sees the pod's GPUs; --build-arg CUDA=0 for a
# CPU-only image.
ARG CUDA=1
COPY requirements.lock requirements-gpu.lock /tmp/
RUN /venv/bin/pip install --no-cache-dir -r /tmp/requirements.lock \
 && if [ "$CUDA" = 1 ]; then /venv/bin/pip install --no-cache-dir -r /tmp/requirements-gpu.lock; fi
COPY . /src
RUN /venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation /src

# ---- runtime: the same Debian with the venv, without compilers
FROM debian:trixie-slim
# fonts-cns11643-kai: the TW-Kai font that glyphs are rendered with (data/render_glyphs.py).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates fonts-cns11643-kai procps \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    VIRTUAL_ENV=/venv \
    PYTHONUNBUFFERED=1
# No ENTRYPOINT: Kubeflow gives each step its command. Locally: docker run IMAGE python -m ...
CMD ["python", "-c", "import cns_vaegan.pipeline.pipeline, tfx; print('cns-vaegan image, tfx', tfx.__version__)"]

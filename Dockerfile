# syntax=docker/dockerfile:1
# clipsearch images.
#
#   docker build -t clipsearch .                                  CPU serving image (default)
#   docker build -t clipsearch:cuda --build-arg VARIANT=cuda .    CUDA torch (host driver via the
#                                                                 NVIDIA container toolkit)
#   docker build -t clipsearch-train --target trainer .           + training-only packages
#
# The torch wheels bundle their CUDA libraries, so both variants start from the same Debian base;
# VARIANT only picks the wheel index. TORCH_INDEX_URL / PIP_FIND_LINKS override where the wheels
# come from (a local wheelhouse or mirror; see docs/deploy.md).

ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# -- base: the Python interpreter and the shared libraries the wheels need at run time ----------
FROM ${BASE_IMAGE} AS base
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# -- builder: a virtual environment with torch + clipsearch and its serving dependencies --------
FROM base AS builder
ARG VARIANT=cpu
ARG TORCH_INDEX_URL=""
ARG TORCH_SPEC="torch torchvision"
ARG PIP_FIND_LINKS=""
ARG PIP_INDEX_URL=https://pypi.org/simple
# A CA bundle file for pip behind a TLS-intercepting proxy (mount it into the build)
ARG PIP_CERT
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
# torch first, from the variant's wheel index, so the project's `torch` requirement is already
# met and pip never pulls the multi-gigabyte CUDA build into a CPU image.
# hadolint ignore=DL3013,SC2086
RUN index="${TORCH_INDEX_URL}"; \
    if [ -z "$index" ] && [ -z "${PIP_FIND_LINKS}" ]; then \
      case "${VARIANT}" in \
        cpu) index=https://download.pytorch.org/whl/cpu ;; \
        cuda) index=https://download.pytorch.org/whl/cu128 ;; \
        *) echo "VARIANT must be cpu or cuda, not ${VARIANT}" >&2; exit 1 ;; \
      esac; \
    fi; \
    pip install ${index:+--index-url "$index"} ${index:+--extra-index-url "${PIP_INDEX_URL}"} \
      ${PIP_FIND_LINKS:+--find-links "${PIP_FIND_LINKS}"} ${TORCH_SPEC}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model ./model
COPY indexer ./indexer
COPY app ./app
# hadolint ignore=DL3013,SC2086
RUN pip install ${PIP_FIND_LINKS:+--find-links "${PIP_FIND_LINKS}"} . \
    && python -c "import app.main, indexer, model"

# -- trainer build: the same environment plus training-only packages ------------------------------
FROM builder AS train-builder
ARG PIP_FIND_LINKS=""
ARG PIP_CERT
# hadolint ignore=DL3013,SC2086
RUN pip install ${PIP_FIND_LINKS:+--find-links "${PIP_FIND_LINKS}"} ".[train]"

# -- shared runtime setup: non-root user, writable model cache, one port --------------------------
FROM base AS runtime-base
RUN groupadd --system --gid 10001 clipsearch \
    && useradd --system --uid 10001 --gid clipsearch --home-dir /home/clipsearch \
       --create-home --shell /usr/sbin/nologin clipsearch \
    && mkdir -p /models /indexes /images \
    && chown clipsearch:clipsearch /models /indexes /images
ENV CLIPSEARCH_CACHE=/models/cache \
    HF_HOME=/models/huggingface \
    CLIPSEARCH_HOST=0.0.0.0 \
    CLIPSEARCH_PORT=8000 \
    CLIPSEARCH_INDEX=/indexes/main
WORKDIR /home/clipsearch

# -- trainer: `docker build --target trainer` (one-shot jobs; never serves) -----------------------
FROM runtime-base AS trainer
COPY --from=train-builder /opt/venv /opt/venv
USER 10001:10001
ENTRYPOINT ["clipsearch"]
CMD ["train", "--help"]

# -- runtime (default target): serving only, no compilers, no pip caches, no training packages ---
FROM runtime-base AS runtime
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000
# /readyz answers 200 once the model and index are loaded (503 before, and on load errors).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('CLIPSEARCH_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["clipsearch"]
CMD ["serve"]

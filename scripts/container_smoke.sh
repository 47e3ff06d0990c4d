#!/usr/bin/env bash
# Build the image and run the compose stack for real with podman (no Docker engine needed):
#   index the sample photos with the one-shot `indexer` job, start `api`, wait for /readyz, run a
#   text search, check the healthcheck, stop everything. Prints a JSON summary with the timings.
#
#   scripts/container_smoke.sh                  CPU image, torch from the default wheel index
#   WHEELHOUSE=/path/to/wheels scripts/container_smoke.sh
#       torch from a local folder of wheels (mounted into the build; TORCH_SPEC pins versions)
#   TORCH_INDEX=/opt/pypi-more scripts/container_smoke.sh
#       torch from a local PEP 503 index (a folder with simple/ and files/)
#
# Needs: podman (with the runc runtime), podman-compose, debootstrap (only when the base image is
# missing: it is made locally, as there is no registry to pull from). Runs as root. Not part of the
# test suite (a full build takes minutes); docs/deploy.md records its output.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
IMAGE=${IMAGE:-clipsearch:latest}
PORT=${PORT:-18000}
VARIANT=${VARIANT:-cpu}
TORCH_SPEC=${TORCH_SPEC:-torch torchvision}
PYTHON=${PYTHON:-.venv/bin/python}
COMPOSE=${COMPOSE:-$(dirname "$PYTHON")/podman-compose}
PROJECT=clipsearch-smoke
WORK=$(mktemp -d /var/tmp/clipsearch-smoke.XXXXXX)
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[smoke] $*" >&2; }

# podman on these hosts: runc (crun fails on this cgroup setup) and no default ulimits.
conf=/etc/containers/containers.conf
if ! grep -q '^default_ulimits' "$conf" 2>/dev/null; then
  log "configuring $conf (runc, default_ulimits = [])"
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >>"$conf"
fi

# The base image, made locally from Debian packages when it is not there yet.
if ! podman image exists "$BASE_IMAGE"; then
  log "making $BASE_IMAGE with debootstrap"
  t=$(now)
  debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >&2
  tar -C "$WORK/rootfs" -c . | podman import - "$BASE_IMAGE" >&2
  rm -rf "$WORK/rootfs"
  log "base image made in $(since "$t") s"
fi

build=(podman build --format docker --network host -t "$IMAGE" --build-arg "VARIANT=$VARIANT"
  --build-arg "TORCH_SPEC=$TORCH_SPEC")
# A TLS-intercepting proxy's CA (as configured for the host's pip) must reach pip in the build.
if [ -n "${PIP_CERT:-}" ]; then
  build+=(-v "$PIP_CERT:/etc/ssl/host-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/host-ca.crt)
fi
if [ -n "${WHEELHOUSE:-}" ]; then
  build+=(-v "$WHEELHOUSE:/wheelhouse:ro" --build-arg PIP_FIND_LINKS=/wheelhouse)
fi
if [ -n "${TORCH_INDEX:-}" ]; then
  build+=(-v "$TORCH_INDEX:/torch-index:ro" --build-arg TORCH_INDEX_URL=file:///torch-index/simple)
fi
log "building $IMAGE: ${build[*]}"
t=$(now)
"${build[@]}" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
build_s=$(since "$t")
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
log "built in $build_s s ($((size / 1000000)) MB)"

# The corpus: scikit-image's sample photographs (shipped inside its wheel).
mkdir -p "$WORK/images"
"$PYTHON" - "$WORK/images" <<'EOF'
import sys
from pathlib import Path

from skimage import data, io

for name in ("astronaut", "cat", "coffee", "rocket", "camera"):
    io.imsave(Path(sys.argv[1]) / f"{name}.jpg", getattr(data, name)(), check_contrast=False)
EOF
chmod -R a+rX "$WORK/images"

export CLIPSEARCH_IMAGES_DIR="$WORK/images" CLIPSEARCH_IMAGE="$IMAGE" CLIPSEARCH_API_PORTS="$PORT"
compose=("$COMPOSE" -p "$PROJECT" -f docker-compose.yml)
cleanup() {
  "${compose[@]}" --profile jobs down -v >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "indexing with the one-shot indexer job"
t=$(now)
"${compose[@]}" --profile jobs run --rm indexer >"$WORK/indexer.log" 2>&1 ||
  { tail -40 "$WORK/indexer.log" >&2; exit 1; }
index_s=$(since "$t")

log "starting api"
t=$(now)
"${compose[@]}" up -d api >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; exit 1; }
ready=""
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ready=yes; break; fi
  sleep 1
done
start_s=$(since "$t")
container=$(podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}' | head -1)
if [ -z "$ready" ]; then
  podman logs "$container" 2>&1 | tail -40 >&2
  log "api never became ready"
  exit 1
fi
log "ready after $start_s s"

search=$(curl -fsS -X POST "http://127.0.0.1:$PORT/search" -H 'Content-Type: application/json' \
  -d '{"text": "a cup of coffee", "k": 3}')
top=$("$PYTHON" -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["hits"][0]["path"])' "$search")
health=$(podman healthcheck run "$container" >/dev/null 2>&1 && echo healthy || echo unhealthy)
user=$(podman exec "$container" id -u)
stats=$(curl -fsS "http://127.0.0.1:$PORT/stats")
log "top hit for 'a cup of coffee': $top; healthcheck: $health; uid $user"

t=$(now)
"${compose[@]}" down >/dev/null 2>&1
stop_s=$(since "$t")
[ "$top" = "coffee.jpg" ] && [ "$health" = healthy ] && [ "$user" != 0 ] || exit 1
"$PYTHON" - "$build_s" "$size" "$index_s" "$start_s" "$stop_s" "$top" "$health" "$stats" <<'EOF'
import json
import sys

build_s, size, index_s, start_s, stop_s, top, health, stats = sys.argv[1:]
out = {
    "build_seconds": float(build_s),
    "image_bytes": int(size),
    "index_job_seconds": float(index_s),
    "api_ready_seconds": float(start_s),
    "stop_seconds": float(stop_s),
    "top_hit": top,
    "healthcheck": health,
    "stats_rss_bytes": json.loads(stats).get("memory", {}).get("rss_bytes"),
}
print(json.dumps(out, indent=2))
print("| step | seconds |\n| --- | --- |")
for k in ("build_seconds", "index_job_seconds", "api_ready_seconds", "stop_seconds"):
    print(f"| {k} | {out[k]} |")
EOF

#!/usr/bin/env bash
# Download, HERE (with registry access), every package gpu/check.sh needs on the GPU machine
# that its image lacks, into .whl/ (git-ignored), for CPython 3.12 on x86-64 Linux (the
# machine's python3; torch 2.11 with CUDA 13, JAX 0.11 with its CUDA 13 plugin, e3nn, numba,
# pytest and pytest-xdist are already there: /work/.library/device/KINDS.md).
#
#   gpu/fetch_wheels.sh          # then: run gpu/check.sh there with carry [".whl"]
#
# What travels (sizes as downloaded for 0.13.0):
#   cuequivariance, cuequivariance-torch, cuequivariance-jax     pure Python, ~0.6 MB
#   cuequivariance-ops-jax-cu13, platformdirs, e3nn-jax          ~0.4 MB
#   cuequivariance-ops-cu13 (45 MB) + cuequivariance-ops-torch-cu13 (28.5 MB): 73.5 MB as
#     wheels, over the device tool's 64 MiB (the repository itself is ~14 MB), so both are
#     unpacked and repacked as one .whl/cueq-ops-cu13.tar.xz (~27 MB; xz -9 takes minutes)
#   openequivariance 0.7.0: a source distribution (~0.1 MB) of Python and C++ sources; its
#     CUDA extension is compiled at import on the machine (nvcc 13 is there)
# The CUDA 13 builds of cuEquivariance's ops match the machine's torch (+cu130) and JAX
# (jax-cuda13-plugin); the cu12 builds would need CUDA 12 runtime libraries it lacks.
# gpu/check.sh runs without .whl/, or with part of it: whatever is absent is reported as
# missing and the subjects and methods that need it are recorded as unavailable or skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.whl"
CUEQ=0.13.0
OEQ=0.7.0
LIMIT_MIB=64
PY="${PYTHON:-python3}"

PLATFORM=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
          --platform manylinux1_x86_64)
PIP=("$PY" -m pip download --no-deps --disable-pip-version-check -q)

mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "wheels for CPython 3.12 x86-64 into $DEST"
"${PIP[@]}" --only-binary=:all: "${PLATFORM[@]}" -d "$DEST" \
  "cuequivariance==$CUEQ" "cuequivariance-torch==$CUEQ" "cuequivariance-jax==$CUEQ" \
  "cuequivariance-ops-jax-cu13==$CUEQ" platformdirs "e3nn-jax==0.21.0"

BUNDLE="$DEST/cueq-ops-cu13.tar.xz"
if [ ! -f "$BUNDLE" ]; then
  echo "cuequivariance-ops-cu13 + cuequivariance-ops-torch-cu13: unpacked and repacked as $BUNDLE"
  "${PIP[@]}" --only-binary=:all: "${PLATFORM[@]}" -d "$TMP/big" \
    "cuequivariance-ops-cu13==$CUEQ" "cuequivariance-ops-torch-cu13==$CUEQ"
  mkdir -p "$TMP/site"
  for w in "$TMP"/big/*.whl; do
    (cd "$TMP/site" && "$PY" -m zipfile -e "$w" .)
  done
  tar -C "$TMP/site" -cf - . | xz -9 -T0 >"$BUNDLE.part"
  mv "$BUNDLE.part" "$BUNDLE"
fi

if ! ls "$DEST"/openequivariance-"$OEQ".tar.gz >/dev/null 2>&1; then
  echo "openequivariance $OEQ (source distribution)"
  "${PIP[@]}" --no-binary=:all: -d "$DEST" "openequivariance==$OEQ"
fi

# one version of each package: two would stop the install there
dups=$(ls "$DEST" | sed -n 's/^\([A-Za-z0-9_]*\)-[0-9].*\.whl$/\1/p' | sort | uniq -d)
if [ -n "$dups" ]; then
  echo "more than one version of: $dups (delete the older from $DEST)" >&2
  exit 1
fi

carried=$(du -cb "$DEST"/* | tail -n 1 | cut -f 1)
tree=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
total=$((carried + tree))
ls -l "$DEST"
printf '.whl: %.1f MiB, working tree: %.1f MiB, together %.1f MiB of the %d MiB limit\n' \
  "$(echo "$carried / 1048576" | bc -l)" "$(echo "$tree / 1048576" | bc -l)" \
  "$(echo "$total / 1048576" | bc -l)" "$LIMIT_MIB"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "over the limit: remove $BUNDLE (cuEquivariance's kernels) and carry the rest" >&2
  exit 1
fi

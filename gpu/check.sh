#!/usr/bin/env bash
# The GPU check: the conformance suite on CUDA (tp_torch with its cueq and oeq adapters, the
# OpenEquivariance oracle, tp_jax under XLA GPU) and the models and paper-MIMO benchmarks
# against cuEquivariance's kernels and OpenEquivariance, in one command. See gpu/README.md.
#
#   gpu/check.sh                 # on the GPU machine: everything on cuda, under 8 minutes
#   gpu/check.sh --device cpu    # the same steps on the CPU at tiny sizes (a dry run)
#
# Each step runs under its own timeout and a failed step does not stop the next. Outputs
# (at most 8 files, two folders deep, for the device tool) go to $OUT (default gpu/out):
#   summary.txt   what passed and failed (also printed at the end)
#   log.txt       every step's output
#   env.txt       GPU, versions, which optional packages import
#   records.tar.gz  conformance JSON records, benchmark JSON/Markdown/PNG, per-step logs
#   bench-models.md, bench-paper.md  the two benchmark tables
#
# Environment: TP_GPU_PY (python with torch and jax; default python3), TP_GPU_TORCH_PY and
# TP_GPU_JAX_PY (the pythons of the torch and jax steps; default TP_GPU_PY), TP_GPU_SITE
# (where carried wheels are installed; default /tmp/tp-gpu-site), TP_GPU_FULL=1 (the whole
# conformance catalogue instead of the cases tagged 'quick'; takes longer than one device call).
set -u
shopt -s nullglob

DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="${2:?--device needs cpu or cuda}"; shift 2 ;;
    --device=*) DEVICE="${1#--device=}"; shift ;;
    --dry-run) DEVICE=cpu; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu/check.sh: unknown argument '$1' (expected --device cpu|cuda or --dry-run)" >&2
       exit 2 ;;
  esac
done
case "$DEVICE" in cpu|cuda) ;; *)
  echo "gpu/check.sh: --device must be cpu or cuda, got '$DEVICE'" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
OUT="${OUT:-$ROOT/gpu/out}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/tp-gpu-check.XXXXXX)"
SITE="${TP_GPU_SITE:-/tmp/tp-gpu-site}"
PY="${TP_GPU_PY:-python3}"
TORCH_PY="${TP_GPU_TORCH_PY:-$PY}"
JAX_PY="${TP_GPU_JAX_PY:-$PY}"
LOG="$OUT/log.txt"
: >"$LOG"
: >"$WORK/steps.tsv"
START=$(date +%s)

export PYTHONUNBUFFERED=1
# torch and JAX share the GPU (in one benchmark process, and across pytest workers): JAX must
# not take 75% of the GPU's memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# OpenEquivariance JIT-compiles its extension (nvcc) at import; cache it where every step finds it
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/tp-gpu-torch-ext}"
export MAX_JOBS="${MAX_JOBS:-8}"

if [ "$DEVICE" = cpu ]; then
  # tiny sizes: the whole dry run takes a few minutes on 2 cores
  CONF_SELECT=(--case-tag quick -k "forward_float32 or device_option")
  CONF_WORKERS=()
  BENCH_MODELS=(--batch 64 --ops cgtp --passes fwd,bwd --budget 20)
  BENCH_PAPER=(--kinds MIMO --L 1,2 --batch 64 --passes fwd,bwd,dbl --budget 20)
  BENCH_TIMING=(--target-s 0.02 --min-repeats 2 --max-repeats 3 --max-call-s 5)
  T_CONF=420; T_BENCH=150; DEADLINE=${TP_GPU_DEADLINE_S:-1200}
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0"
else
  CONF_SELECT=(--case-tag quick)
  [ "${TP_GPU_FULL:-0}" = 1 ] && CONF_SELECT=()
  CONF_WORKERS=(-n 6)
  BENCH_MODELS=(--ops cgtp --passes fwd,bwd,dbl --budget 60)
  BENCH_PAPER=(--kinds MIMO --L 1,2,4,6 --passes fwd,bwd,dbl --budget 60)
  BENCH_TIMING=(--target-s 0.1 --min-repeats 3 --max-repeats 10 --max-call-s 5)
  T_CONF=100; T_BENCH=100; DEADLINE=${TP_GPU_DEADLINE_S:-460}
fi
SUBJECTS="tp_torch,tp_jax,e3nn,e3nn-jax,cueq-torch,cueq-jax,oeq"

say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

# step NAME TIMEOUT_S COMMAND...: run a program under a timeout, its output in $WORK/NAME.log
# (the end of it also in log.txt), and record "NAME<TAB>exit status<TAB>seconds" in steps.tsv.
# A step never runs past DEADLINE seconds after the start: its timeout is cut to what is left,
# and a step with under 20 s left is skipped.
step() {
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS rc left=$(( DEADLINE - ($(date +%s) - START) ))
  if [ "$left" -lt 20 ]; then skip_step "$name" "${left}s left of the ${DEADLINE}s deadline"
    return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "== $name (timeout ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  tail -n 60 "$WORK/$name.log" >>"$LOG"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$WORK/steps.tsv"
  say "   $name: exit $rc$([ "$rc" = 124 ] && echo ' (timed out)')"
}

skip_step() { printf '%s\tskip\t0\n' "$1" >>"$WORK/steps.tsv"; say "== $1 skipped: $2"; }

# ---------------------------------------------------------------- 1. carried packages
install_carried() {
  mkdir -p "$SITE"
  local wheels=(.whl/*.whl) bundles=(.whl/*.tar.xz) sdists=(.whl/openequivariance-*.tar.gz)
  if [ "$DEVICE" = cpu ]; then
    # cuEquivariance's CUDA ops cannot load without CUDA's libraries, and once installed
    # cuequivariance-jax tries to load them even for its pure-JAX method: left out on the CPU
    echo "--device cpu: not installing the CUDA-only cuequivariance ops"
    wheels=(); for w in .whl/*.whl; do [[ "$w" == *cuequivariance_ops* ]] || wheels+=("$w"); done
    bundles=()
  fi
  if [ ${#wheels[@]} -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "${wheels[@]}" || return 1
  fi
  # wheels too large to carry zipped travel as one xz tarball of their installed files
  for b in "${bundles[@]}"; do tar -xJf "$b" -C "$SITE" || return 1; done
  # OpenEquivariance is a source distribution of Python files (its CUDA extension is compiled
  # at import): unpacked and used in place
  for s in "${sdists[@]}"; do tar -xzf "$s" -C "$SITE" || return 1; done
  return 0
}

pythonpath=()
if [ -d .whl ]; then
  t0=$SECONDS
  say "== install-carried: .whl/ into $SITE"
  install_carried >"$WORK/install-carried.log" 2>&1
  rc=$?
  cat "$WORK/install-carried.log" >>"$LOG"
  printf 'install-carried\t%s\t%s\n' "$rc" "$((SECONDS - t0))" >>"$WORK/steps.tsv"
  pythonpath+=("$SITE")
  for d in "$SITE"/openequivariance-*/; do
    [ -f "$d/pyproject.toml" ] || continue
    pythonpath+=("$("$PY" gpu/dist_info.py "$SITE" "$d")")
  done
else
  skip_step install-carried "no .whl/ folder (run gpu/fetch_wheels.sh here and carry .whl)"
fi
# The repository's own packages, used in place unless the python already has them
# (the nox environments here do; the GPU machine does not).
if ! "$TORCH_PY" -c "import tp_spec, tp_kernels, tp_torch, tp_conformance" 2>/dev/null; then
  mkdir -p "$SITE"
  while read -r p; do pythonpath+=("$p"); done < <(
    "$PY" gpu/dist_info.py "$SITE" spec packages/tp-kernels packages/tp-torch packages/tp-jax \
      conformance)
  pythonpath+=("$SITE")
fi
if [ ${#pythonpath[@]} -gt 0 ]; then
  PYTHONPATH="$(IFS=:; echo "${pythonpath[*]}")${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONPATH
fi
say "PYTHONPATH=${PYTHONPATH:-}"
# cuEquivariance's ops libraries name libnvrtc.so.13 and libcublas.so.13 without a search path:
# point the loader at the NVIDIA wheels' library folders of the python that has torch.
if [ "$DEVICE" = cuda ]; then
  libdirs="$("$TORCH_PY" gpu/env_report.py --cuda-lib-dirs 2>/dev/null)"
  if [ -n "$libdirs" ]; then
    export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  fi
fi

# ---------------------------------------------------------------- 2. environment
step env 60 "$TORCH_PY" gpu/env_report.py
cp "$WORK/env.log" "$OUT/env.txt"
# The first import of openequivariance compiles its CUDA extension with nvcc (cached in
# TORCH_EXTENSIONS_DIR for the later steps): in the background, while tp_jax is tested.
OEQ_PID=
if [ "$DEVICE" = cuda ]; then
  step oeq-build 200 "$TORCH_PY" -c "import openequivariance; print(openequivariance.__file__)" &
  OEQ_PID=$!
else
  skip_step oeq-build "OpenEquivariance needs CUDA"
fi

# ---------------------------------------------------------------- 3. conformance
# pytest-xdist's --dist loadgroup (a worker reuses what a backend compiled for its group)
# groups nothing from pytest 9.2 on (conformance/tests/conftest.py stops the run then)
if [ ${#CONF_WORKERS[@]} -gt 0 ] && "$TORCH_PY" -c "import sys, pytest; sys.exit(tuple(map(int, \
    pytest.__version__.split('.')[:2])) >= (9, 2))" 2>/dev/null; then
  CONF_WORKERS+=(--dist loadgroup)
fi
conf_args=(conformance/tests/test_conformance.py -q -p no:cacheprovider -rf --device "$DEVICE"
           "${CONF_SELECT[@]}" "${CONF_WORKERS[@]}")
step conformance-tp_jax "$T_CONF" "$JAX_PY" -m pytest "${conf_args[@]}" \
  --backend tp_jax --summary-json "$WORK/conformance-tp_jax.json"
[ -n "$OEQ_PID" ] && wait "$OEQ_PID"
step conformance-tp_torch "$T_CONF" "$TORCH_PY" -m pytest "${conf_args[@]}" \
  --backend tp_torch --backend oeq --summary-json "$WORK/conformance-tp_torch.json"

# ---------------------------------------------------------------- 4. benchmarks
bench_args=(-m benchmarks run --device "$DEVICE" --subjects "$SUBJECTS" --no-progress
            --machine "check-$DEVICE" "${BENCH_TIMING[@]}")
step bench-models "$T_BENCH" "$TORCH_PY" "${bench_args[@]}" --suite models \
  --out "$WORK/bench-models" "${BENCH_MODELS[@]}"
step bench-paper "$T_BENCH" "$TORCH_PY" "${bench_args[@]}" --suite paper \
  --out "$WORK/bench-paper" "${BENCH_PAPER[@]}"

# ---------------------------------------------------------------- 5. outputs
for s in models paper; do
  [ -f "$WORK/bench-$s/results.md" ] && cp "$WORK/bench-$s/results.md" "$OUT/bench-$s.md"
done
"$PY" gpu/summarize.py "$WORK" >"$OUT/summary.txt" 2>&1
RC=$?
tar -czf "$OUT/records.tar.gz" -C "$WORK" . 2>>"$LOG"
say "total $(( $(date +%s) - START )) s; outputs in $OUT"
cat "$OUT/summary.txt" | tee -a "$LOG"
rm -rf "$WORK"
exit "$RC"

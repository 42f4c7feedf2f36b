#!/bin/bash
# One GPU session of training (see common.py for why JAX): every job of jobs.txt runs at
# once on the one GPU, each for MINUTES of wall-clock time, and every minute their weights
# and logs are bundled into $OUT (at most 8 files come back, 16 MiB each), so that a run
# stopped at its time limit still brings back its last weights.
#
#     OUT=/tmp/out MINUTES=8 bash benchmarks/gpu/run.sh [jobs.txt]
#
# jobs.txt: one job a line, "BUNDLE NAME SCRIPT ARGS..." (SCRIPT relative to this folder;
# --minutes and --out are added); .gpu/ (from prepare.py) holds the data, inits and wheels.
set -u
here=$(cd "$(dirname "$0")" && pwd)
jobs=${1:-$here/jobs.txt}
OUT=${OUT:?set OUT}
MINUTES=${MINUTES:-8}
work=/tmp/gpu_jobs
mkdir -p "$work" "$OUT"
exec > >(tee -a "$OUT/driver.log") 2>&1

export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
if ! python3 -c "import keras" 2>/dev/null; then  # the GPU machine has no Keras
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site .gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
count=$(grep -c . "$jobs")
# Each process takes a share of the GPU's memory, not all of it (JAX's default is 75 %).
export XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $count, 3))")
python3 -c "import jax, keras, optax; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nvidia-smi dmon -s um -d 15 > "$work/dmon.txt" 2>&1 &  # GPU load and memory, for the record

bundle() {  # tar each bundle's job folders into $OUT, atomically
    for b in $(awk '{print $1}' "$jobs" | sort -u); do
        names=$(awk -v b="$b" '$1 == b {print $2}' "$jobs")
        (cd "$work" && tar -cf "$OUT/.$b.tar" $names dmon.txt 2>/dev/null \
            && mv "$OUT/.$b.tar" "$OUT/$b.tar")
    done
}

pids=()
while read -r b name script args; do
    [ -z "$b" ] && continue
    mkdir -p "$work/$name"
    python3 "$here/$script" $args --minutes "$MINUTES" --out "$work/$name" \
        > "$work/$name/stdout.txt" 2>&1 &
    pids+=($!)
    echo "started $name (pid $!): $script $args"
done < "$jobs"

ticks=0
while true; do
    sleep 15
    ticks=$((ticks + 1))
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    [ "$alive" -eq 0 ] && break
    [ $((ticks % 4)) -ne 0 ] && continue
    bundle
    echo "$(date +%T) $alive of ${#pids[@]} jobs running"
    for d in "$work"/*/; do tail -n 1 "$d/stdout.txt" 2>/dev/null; done
done
bundle
for d in "$work"/*/; do tail -n 2 "$d/stdout.txt" 2>/dev/null; done
echo "done"

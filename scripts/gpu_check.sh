#!/usr/bin/env bash
# One call on the lent GPU machine (scripts/device_pack.sh made the pack it unpacks): every
# gpu-labelled test, `inbetween bench` at 480p and 720p, and one `serve --device cuda` job on the
# fixture model. Logs go to $OUT (tests.log, bench*.txt, serve.log); a summary prints last. Each
# part has its own time limit so that the whole stays inside one call.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
tar -xJf .device-pack/pack.tar.xz
export LD_LIBRARY_PATH="$PWD/.device-libs:${LD_LIBRARY_PATH:-}"
export INBETWEEN_FIXTURE="$PWD/.device-build/fixture" INBETWEEN_BINARY_DIR="$PWD/.device-build"
cd .device-build
summary="$OUT/summary.txt"
: > "$summary"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.total --format=csv,noheader >> "$summary"

# 1. The GPU tests.
for t in test_*_gpu; do
  timeout 100 "./$t" > "$OUT/one.log" 2>&1
  rc=$?
  { echo "=== $t rc=$rc"; cat "$OUT/one.log"; } >> "$OUT/tests.log"
  echo "$t: rc=$rc, $(grep -c '^\[       OK' "$OUT/one.log") passed, $(grep -c '^\[  FAILED  \] [A-Za-z]' "$OUT/one.log") failed" >> "$summary"
done
rm -f "$OUT/one.log"
grep -h '\[measured\].*\(PSNR\|engine DiT\)' "$OUT/tests.log" >> "$summary"

# 2. The benchmarks (the 720p and generate runs only while time is left; none with BENCH=0).
if [ "${BENCH:-1}" = 0 ]; then
  T0=$(( T0 - 100000 ))  # counts as out of time for every benchmark below
else
  timeout 140 ./inbetween bench --size 832x480 --frames 81 --repeats 2 > "$OUT/bench480.txt" 2> "$OUT/bench.log"
  echo "bench 480p rc=$? at $(elapsed) s" >> "$summary"
fi
if [ "$(elapsed)" -lt 250 ]; then
  timeout 150 ./inbetween bench --size 1280x720 --frames 81 --repeats 1 --stages vae,dit > "$OUT/bench720.txt" 2>> "$OUT/bench.log"
  echo "bench 720p rc=$? at $(elapsed) s" >> "$summary"
fi

# 3. A job through the server on the GPU (needs the MP4 writer: a pack made with MP4=1).
if ! ldd ./inbetween | grep -q "not found" && ./inbetween --help > /dev/null 2>&1; then
  ./inbetween serve --model fixture/model --device cuda --port 18080 --data-dir /tmp/ibjobs > "$OUT/serve.log" 2>&1 &
  srv=$!
  for _ in $(seq 120); do curl -sf http://127.0.0.1:18080/healthz > /dev/null && break; sleep 0.5; done
  id=$(curl -s -F first=@fixture/first.png -F last=@fixture/last.png -F prompt="a small bird takes off" \
         -F frames=9 -F max_area=4096 -F steps=4 -F seed=7 http://127.0.0.1:18080/v1/jobs |
       python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
  state=unknown
  for _ in $(seq 120); do
    state=$(curl -s "http://127.0.0.1:18080/v1/jobs/$id" | python3 -c 'import sys, json; print(json.load(sys.stdin)["state"])')
    case "$state" in done|failed|cancelled) break ;; esac
    sleep 0.5
  done
  curl -s -o /tmp/job.mp4 "http://127.0.0.1:18080/v1/jobs/$id/video"
  curl -s "http://127.0.0.1:18080/v1/jobs/$id" >> "$OUT/serve.log"
  echo "serve --device cuda: job $id $state, video $(stat -c %s /tmp/job.mp4 2>/dev/null || echo 0) bytes, $(head -c 12 /tmp/job.mp4 | tail -c 4)" >> "$summary"
  kill "$srv"; wait "$srv" 2>/dev/null
fi

# 4. The whole generation's compute at 480p, 4 steps (while time is left).
if [ "$(elapsed)" -lt 390 ]; then
  timeout $((470 - $(elapsed))) ./inbetween bench --size 832x480 --frames 81 --stages generate --steps 4 > "$OUT/bench_generate.txt" 2>> "$OUT/bench.log"
  echo "bench generate rc=$? at $(elapsed) s" >> "$summary"
fi
cat "$summary"
grep -h -E "^(attention|gemm|dit|denoise|t5|clip|vae|generate)" "$OUT"/bench*.txt

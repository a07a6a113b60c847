#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang in build-fuzz and runs each for N seconds
# (default 60) on seed corpora made from the fixture model's files.
#   scripts/fuzz.sh [seconds] [target...]     e.g. scripts/fuzz.sh 600 fuzz_state_dict_pickle
# Crashes are written to build-fuzz/findings/<target>/; the corpora grow in build-fuzz/corpus/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/build-fuzz"
SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_safetensors_header fuzz_state_dict_pickle fuzz_zip_directory)
FIXTURE="${INBETWEEN_FIXTURE:-$ROOT/../shared/fixtures/tiny-flf2v}"
case "$FIXTURE" in /*) ;; *) FIXTURE="$ROOT/$FIXTURE" ;; esac

CC="${CC:-clang}" CXX="${CXX:-clang++}" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DINBETWEEN_CUDA=OFF -DINBETWEEN_TESTS=OFF -DINBETWEEN_FUZZ=ON >/dev/null
ninja -C "$BUILD" "${TARGETS[@]}"

# Seeds: safetensors files (small ones whole, large ones cut after the header), the data.pkl of each
# .pth, and each .pth's zip layout with its entries shrunk to a few bytes (plus a zip64 variant).
SEEDS="$BUILD/seeds"
rm -rf "$SEEDS"
mkdir -p "$SEEDS"/{fuzz_safetensors_header,fuzz_state_dict_pickle,fuzz_zip_directory}
python3 - "$FIXTURE" "$SEEDS" <<'PY'
import glob, os, struct, sys, zipfile
fixture, seeds = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(fixture, "*.safetensors")) + glob.glob(os.path.join(fixture, "model", "*.safetensors")))
for i, f in enumerate(files):
    b = open(f, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    keep = b if len(b) <= 65536 else b[: 8 + n]
    open(os.path.join(seeds, "fuzz_safetensors_header", f"st{i}"), "wb").write(keep)
for i, f in enumerate(sorted(glob.glob(os.path.join(fixture, "model", "*.pth")))):
    z = zipfile.ZipFile(f)
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
    open(os.path.join(seeds, "fuzz_state_dict_pickle", f"pkl{i}"), "wb").write(z.read(pkl))
    for force64 in (False, True):
        out = os.path.join(seeds, "fuzz_zip_directory", f"zip{i}_{int(force64)}")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
            for n in z.namelist()[:24]:
                with w.open(n, "w", force_zip64=force64) as e:
                    e.write(z.read(n)[:8])
PY

for t in "${TARGETS[@]}"; do
  mkdir -p "$BUILD/corpus/$t" "$BUILD/findings/$t"
  echo "== $t: ${SECONDS_EACH}s"
  (cd "$BUILD/findings/$t" && "$BUILD/fuzz/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
     -rss_limit_mb=2048 -print_final_stats=1 "$BUILD/corpus/$t" "$SEEDS/$t" 2>&1 |
     grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==.*ERROR|SUMMARY)|#[0-9]+ *DONE" || true)
  if ls "$BUILD/findings/$t"/crash-* "$BUILD/findings/$t"/leak-* "$BUILD/findings/$t"/timeout-* "$BUILD/findings/$t"/oom-* >/dev/null 2>&1; then
    echo "FINDINGS in $BUILD/findings/$t"
    exit 1
  fi
done

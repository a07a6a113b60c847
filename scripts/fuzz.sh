#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang in build-fuzz, runs each on its seeds whole (the
# size and nesting bombs that once blew up, larger than what the fuzzer mutates), then fuzzes each
# for N seconds (default 60) from seed corpora made from the fixture model's files. Fails on any
# finding: a crash, a sanitizer report, a timeout, memory over the RSS limit, or a fuzzer that fails
# to run.
#   scripts/fuzz.sh [seconds] [target...]     e.g. scripts/fuzz.sh 600 fuzz_state_dict_pickle
#   scripts/fuzz.sh --check                   exit 0 when clang can link -fsanitize=fuzzer here
# Findings are written to build-fuzz/findings/<target>/, each target's log to
# build-fuzz/logs/<target>.log; the corpora grow in build-fuzz/corpus/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/build-fuzz"
CC="${CC:-clang}"
CXX="${CXX:-clang++}"

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$tmp/t.cc"
  command -v "$CXX" >/dev/null && "$CXX" -fsanitize=fuzzer,address,undefined "$tmp/t.cc" -o "$tmp/t" 2>/dev/null &&
    "$tmp/t" -runs=1 >/dev/null 2>&1
  exit $?
fi

SECONDS_EACH="${1:-60}"
shift || true
ALL=(fuzz_safetensors_header fuzz_state_dict_pickle fuzz_zip_directory fuzz_image_decode fuzz_model_config
     fuzz_prompt_clean)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
FIXTURE="${INBETWEEN_FIXTURE:-$ROOT/../shared/fixtures/tiny-flf2v}"
case "$FIXTURE" in /*) ;; *) FIXTURE="$ROOT/$FIXTURE" ;; esac
# ASan needs headroom; the key bomb this must catch reached 2.2 GB without it.
RSS_LIMIT_MB=1536

CC="$CC" CXX="$CXX" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DINBETWEEN_CUDA=OFF -DINBETWEEN_TESTS=OFF -DINBETWEEN_FUZZ=ON >/dev/null
ninja -C "$BUILD" "${TARGETS[@]}"

# Seeds: safetensors files (small ones whole, large ones cut after the header), the data.pkl of each
# .pth, each .pth's zip layout with its entries shrunk to a few bytes (plus a zip64 variant), the
# model's config files, small images of each format and colour type, prompts; and for each parser
# the bombs of issue 12 (a memoised storage key loaded 4000 times, deeply nested JSON).
SEEDS="$BUILD/seeds"
rm -rf "$SEEDS"
for t in "${ALL[@]}"; do mkdir -p "$SEEDS/$t"; done
python3 - "$FIXTURE" "$SEEDS" "$ROOT" <<'PY'
import glob, json, os, struct, sys, zipfile
fixture, seeds, root = sys.argv[1], sys.argv[2], sys.argv[3]
def put(target, name, data):
    with open(os.path.join(seeds, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
files = sorted(glob.glob(os.path.join(fixture, "*.safetensors")) +
               glob.glob(os.path.join(fixture, "model", "*.safetensors")))
for i, f in enumerate(files):
    b = open(f, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    put("fuzz_safetensors_header", f"st{i}", b if len(b) <= 65536 else b[: 8 + n])
deep = b"[" * ((16 << 20) - 8)  # the largest header accepted, all nesting
put("fuzz_safetensors_header", "bomb_nested", struct.pack("<Q", len(deep)) + deep)
for i, f in enumerate(sorted(glob.glob(os.path.join(fixture, "model", "*.pth")))):
    z = zipfile.ZipFile(f)
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
    put("fuzz_state_dict_pickle", f"pkl{i}", z.read(pkl))
    for force64 in (False, True):
        out = os.path.join(seeds, "fuzz_zip_directory", f"zip{i}_{int(force64)}")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
            for n in z.namelist()[:24]:
                with w.open(n, "w", force_zip64=force64) as e:
                    e.write(z.read(n)[:8])
# The key bomb: 1 MiB storage key, memoised, loaded by 4000 tensors (protocol 2 opcodes).
def ustr(s): return b"X" + struct.pack("<I", len(s)) + s
p = bytearray(b"\x80\x02ccollections\nOrderedDict\n)R(")
for i in range(4000):
    p += ustr(b"t%d" % i) + b"ctorch._utils\n_rebuild_tensor_v2\n((" + ustr(b"storage") + b"ctorch\nFloatStorage\n"
    p += (ustr(b"k" * (1 << 20)) + b"q\x01") if i == 0 else b"h\x01"
    p += ustr(b"cpu") + b"K\x04tQK\x00(K\x04t(K\x01t\x89ccollections\nOrderedDict\n)RtR"
put("fuzz_state_dict_pickle", "bomb_key", bytes(p + b"u."))
for name in ("config.json", "inbetween.json"):
    path = os.path.join(fixture, "model", name)
    if os.path.exists(path):
        put("fuzz_model_config", name, open(path, "rb").read())
put("fuzz_model_config", "bomb_nested", "{\"t5\": " + "[" * ((1 << 20) - 16))  # within the 1 MiB limit
put("fuzz_model_config", "big_text_len", json.dumps({"model_type": "flf2v", "text_len": 65536, "in_dim": 36,
    "dim": 5120, "ffn_dim": 13824, "freq_dim": 256, "out_dim": 16, "num_heads": 40, "num_layers": 40, "eps": 1e-6}))
# Findings kept as seeds: epsilons in (0, 1) as doubles that round to 0 or 1 as floats (2026-12-01).
for name, eps in (("eps_rounds_to_0", "1e-96"), ("eps_rounds_to_1", "0.99999999999")):
    put("fuzz_model_config", name, '{"model_type": "flf2v", "text_len": 16, "in_dim": 36, "dim": 128, "ffn_dim": 256, '
        '"freq_dim": 136, "out_dim": 16, "num_heads": 4, "num_layers": 2, "eps": ' + eps + '}')
for img in glob.glob(os.path.join(root, "assets", "*.png")):
    put("fuzz_image_decode", os.path.basename(img), open(img, "rb").read())
cases = json.load(open(os.path.join(fixture, "tokenizer.json")))["cases"]
for i, c in enumerate(cases):
    put("fuzz_prompt_clean", f"case{i}", c["text"])
for i, s in enumerate(["&amp;lt;b&amp;gt; caf\u00c3\u00a9 \u3000 x\u2028y",
                       "&#x1F600;&#0;&#xD800;&NotANamedEntity; &ampamp",
                       "\u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d \x1c\t\n  end  "]):
    put("fuzz_prompt_clean", f"mixed{i}", s)
PY
# Small images of each colour type and format, when ffmpeg is there (scripts/setup.sh installs it).
if command -v ffmpeg >/dev/null; then
  img="$SEEDS/fuzz_image_decode"
  for spec in "rgb24 png" "rgba png" "gray png" "gray16be png" "rgb48be png" "pal8 png" "ya8 png" "yuvj420p jpg" \
              "gray jpg" "yuv420p webp" "yuva420p webp"; do
    read -r fmt ext <<<"$spec"
    ffmpeg -loglevel error -f lavfi -i testsrc=size=24x16 -frames:v 1 -pix_fmt "$fmt" "$img/small_$fmt.$ext" </dev/null ||
      echo "fuzz: no $fmt $ext seed (ffmpeg could not write it)"
  done
fi

# One target: its seeds whole, then fuzzing; the fuzzer's exit status goes to logs/<target>.rc.
fuzz_one() {
  local t=$1 rc=0
  local bin="$BUILD/fuzz/$t" log="$BUILD/logs/$t.log"
  local flags=(-rss_limit_mb="$RSS_LIMIT_MB" -timeout=10 -artifact_prefix="$BUILD/findings/$t/")
  rm -rf "$BUILD/findings/$t"
  mkdir -p "$BUILD/corpus/$t" "$BUILD/findings/$t"
  # Each seed as it is (no -max_len cut), so the bombs are parsed in full under the RSS limit.
  "$bin" "${flags[@]}" "$SEEDS/$t"/* >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    "$bin" "${flags[@]}" -max_total_time="$SECONDS_EACH" -max_len=65536 -print_final_stats=1 \
      "$BUILD/corpus/$t" "$SEEDS/$t" >>"$log" 2>&1 || rc=$?
  fi
  echo "$rc" >"$BUILD/logs/$t.rc"
}

# Targets run side by side, FUZZ_JOBS at a time (default: one per CPU core).
JOBS="${FUZZ_JOBS:-$(nproc)}"
mkdir -p "$BUILD/logs"
echo "fuzz: ${#TARGETS[@]} targets, ${SECONDS_EACH}s each, $JOBS at a time"
for t in "${TARGETS[@]}"; do
  rm -f "$BUILD/logs/$t.rc"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait

status=0
for t in "${TARGETS[@]}"; do
  log="$BUILD/logs/$t.log"
  rc=$(cat "$BUILD/logs/$t.rc" 2>/dev/null || echo "no status")
  echo "== $t: $(grep -E "^stat::number_of_executed_units" "$log" | awk '{print $2}') runs, peak RSS" \
    "$(grep -E "^stat::peak_rss_mb" "$log" | awk '{print $2}') MB"
  if [ "$rc" != 0 ] || ls "$BUILD/findings/$t"/* >/dev/null 2>&1; then
    echo "FINDING in $t (fuzzer exit status $rc); artifacts in $BUILD/findings/$t, log $log:"
    grep -E -A25 "^==[0-9]+==|ERROR: libFuzzer|SUMMARY|out-of-memory|Test unit written" "$log" | head -60 ||
      tail -30 "$log"
    status=1
  fi
done
exit $status

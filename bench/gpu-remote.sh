#!/usr/bin/env bash
# The GPU check of the training path, on a GPU machine prepared by bench/gpu-bundle.sh (no Node.js
# or network needed there; an NVIDIA driver with its Vulkan ICD, or any Vulkan driver, is).
#
# Usage (repo root, with dist/ and the bundle folder present):
#   bash bench/gpu-remote.sh [BUNDLE] [--scale small|default] [--bench "NAME..."] [--no-cli] [--demo]
#   (BUNDLE defaults to tmp/gpu; --bench the benchmarks of step 3, default gpu, e.g. "gpu-latency gpu"
#   (" " for none); --no-cli skips step 4; --demo adds step 5)
# Logs and results go to $OUT if set, else BUNDLE/out.
#
# 1. Uses the bundle's node (the better-sqlite3 binding is built for it) and unpacks node_modules
#    when the checkout has none; uses the system's Vulkan loader and libglvnd, or the bundle's
#    copies unpacked under BUNDLE/root; points Vulkan at the NVIDIA ICD when VK_ICD_FILENAMES is unset.
# 2. Selects the webgpu backend with the product's own selection (participant-node/model/backend.ts:
#    a software adapter is refused unless FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1) and prints the adapter.
# 3. `node dist/bench/run.js gpu`: gradients of the MF and the default two-tower model and one
#    DP-SGD chunk against the cpu backend, and samples/s (bench/gpu.ts); bench/results/gpu.json.
# 4. End to end, the CLI a party runs: synthetic data (seed 1, --scale), the platform's node,
#    `node train-local --seed 7` then `node evaluate --seed 1 --ground-truth` on webgpu and on wasm;
#    one JSON line per backend with samples/s, final loss, HR@10 and cross-domain HR@10.
# 5. (--demo) The whole demo, coordinator and three nodes, on webgpu and on wasm: `node dist/bin/demo.js
#    --scale SCALE --seed 3 --rounds 2 --eval-users 300 --backend B --json`; one JSON line per backend
#    with the wall time, whether the audit log verified, and per party HR@10 (local-only, federated,
#    pooled) and epsilon. (On an H100, --scale small: 29 s on webgpu, 18 s on wasm.)
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE="tmp/gpu"; SCALE="default"; BENCHES="gpu"; CLI=1; DEMO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) SCALE="${2:?--scale needs small|default|large}"; shift 2 ;;
    --bench) BENCHES="${2:?--bench needs benchmark names}"; shift 2 ;;
    --no-cli) CLI=0; shift ;;
    --demo) DEMO=1; shift ;;
    -*) echo "gpu-remote: unknown option $1" >&2; exit 2 ;;
    *) BUNDLE="$1"; shift ;;
  esac
done
BUNDLE="$(realpath "$BUNDLE")" || exit 2
OUT="${OUT:-$BUNDLE/out}"; mkdir -p "$OUT"
for f in node.xz node_modules.tar.xz; do
  [ -f "$BUNDLE/$f" ] || { echo "gpu-remote: $BUNDLE/$f missing (make it with bash bench/gpu-bundle.sh)" >&2; exit 2; }
done
[ -f dist/bench/run.js ] || { echo "gpu-remote: dist/ missing (npm run build, then carry dist/)" >&2; exit 2; }

command -v nvidia-smi >/dev/null && nvidia-smi -L
mkdir -p "$BUNDLE/bin"
[ -x "$BUNDLE/bin/node" ] || { xz -dc "$BUNDLE/node.xz" > "$BUNDLE/bin/node" && chmod +x "$BUNDLE/bin/node"; } || exit 1
export PATH="$BUNDLE/bin:$PATH"
echo "node $(node --version) ($(command -v node)), $(nproc) CPUs"
[ -d node_modules ] || tar -xJf "$BUNDLE/node_modules.tar.xz" || exit 1

# the bundle's copy of each library the system lacks (package:soname)
for pair in libvulkan1:libvulkan.so.1 libglvnd0:libGLdispatch.so.0 libglx0:libGLX.so.0 libegl1:libEGL.so.1; do
  pkg="${pair%%:*}"; so="${pair#*:}"
  ldconfig -p | grep -qF "$so " && continue
  for deb in "$BUNDLE"/debs/"$pkg"_*.deb; do
    [ -f "$deb" ] || { echo "gpu-remote: the system has no $so and the bundle no $pkg" >&2; continue; }
    dpkg-deb -x "$deb" "$BUNDLE/root" && echo "$so: the bundle's ($pkg, unpacked under $BUNDLE/root)"
  done
done
[ -d "$BUNDLE/root" ] && export LD_LIBRARY_PATH="$BUNDLE/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_ICD_FILENAMES="$icd" VK_DRIVER_FILES="$icd"; break; fi
  done
fi
echo "Vulkan ICD: ${VK_ICD_FILENAMES:-(loader default)}"

node -e '
  const { selectBackend, defaultBackendDeps } = require("./dist/participant-node/model/backend");
  selectBackend(require("@tensorflow/tfjs"), "webgpu", { ...defaultBackendDeps, log: (m) => console.log(m) })
    .then((s) => { console.log("webgpu adapter: " + JSON.stringify(s)); process.exit(0); })
    .catch((e) => { console.log("webgpu unavailable: " + e.message); process.exit(1); });' || exit 1

for name in $BENCHES; do
  ( time node dist/bench/run.js "$name" ) 2>&1 | tee "$OUT/bench-$name.log"
  cp "bench/results/$name.json" "$OUT/" 2>/dev/null
done

demo_step() {
  for b in webgpu wasm; do
    local s=$SECONDS
    node dist/bin/demo.js --scale "$SCALE" --seed 3 --rounds 2 --eval-users 300 --backend "$b" --work "$W/demo-$b" --json > "$OUT/demo-$b.json" 2> "$OUT/demo-$b.log" || { tail -5 "$OUT/demo-$b.log"; return 1; }
    node -e '
      const l = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n"); const d = JSON.parse(l[l.length - 1]);
      const parties = Object.fromEntries(Object.entries(d.parties).map(([p, v]) => [p, { local: v.local["hr@10"], federated: v.federated["hr@10"], pooled: v.pooled["hr@10"], epsilon: v.epsilon }]));
      console.log(JSON.stringify({ figure: "demo_end_to_end", backend: process.argv[2], scale: d.scale, rounds: d.rounds, wallSeconds: Number(process.argv[3]), verified: d.verified, parties }));' \
      "$OUT/demo-$b.json" "$b" "$((SECONDS - s))" | tee -a "$OUT/demo.jsonl"
  done
}

W="$(mktemp -d)"
if [ "$CLI" != 1 ]; then
  [ "$DEMO" = 1 ] && { demo_step || exit 1; }
  rm -rf "$W"
  exit 0
fi

node dist/bin/fedbridge.js data generate --out "$W/data" --seed 1 --scale "$SCALE" --parties platform,insurer > "$OUT/generate.log" || exit 1
for b in webgpu wasm; do
  D="$W/$b"
  node dist/bin/fedbridge.js node init --data-dir "$D" --name platform > /dev/null || exit 1
  node dist/bin/fedbridge.js node import --data-dir "$D" --users "$W/data/platform/users.csv" \
    --items "$W/data/platform/items.csv" --interactions "$W/data/platform/interactions.csv" > /dev/null || exit 1
  node dist/bin/fedbridge.js node train-local --data-dir "$D" --seed 7 --backend "$b" --json > "$OUT/train-$b.json" 2> "$OUT/train-$b.log" || { tail -5 "$OUT/train-$b.log"; exit 1; }
  node dist/bin/fedbridge.js node evaluate --data-dir "$D" --backend "$b" --seed 1 --ground-truth "$W/data/platform/ground_truth.csv" --json > "$OUT/eval-$b.json" 2> "$OUT/eval-$b.log" || { tail -5 "$OUT/eval-$b.log"; exit 1; }
  node -e '
    const [t, e] = process.argv.slice(1, 3).map((f) => { const l = require("fs").readFileSync(f, "utf8").trim().split("\n"); return JSON.parse(l[l.length - 1]); });
    console.log(JSON.stringify({ figure: "train_local_end_to_end", backend: t.backend, adapter: t.adapter, scale: process.argv[3], samplesPerSecond: Math.round(t.samplesPerSecond), finalLoss: t.finalLoss, hr10: e.metrics?.["hr@10"], crossDomainHr10: e.crossDomain?.overall?.["hr@10"] }));' \
    "$OUT/train-$b.json" "$OUT/eval-$b.json" "$SCALE" | tee -a "$OUT/end-to-end.jsonl"
done
[ "$DEMO" = 1 ] && { demo_step || exit 1; }
rm -rf "$W"

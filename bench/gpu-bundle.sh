#!/usr/bin/env bash
# Packs what the GPU check needs onto a GPU machine that has an NVIDIA driver but no Node.js and no
# network (an air-gapped CUDA box; this workplace's lent device machines): the compiled project,
# a production node_modules with the WebGPU packages, this machine's node binary and the Vulkan
# loader. bench/gpu-remote.sh runs the check there.
#
# Usage:   bash bench/gpu-bundle.sh [OUTDIR]        (OUTDIR defaults to tmp/gpu, gitignored)
# Then, on the GPU machine, in a copy of this repo with OUTDIR and dist/ beside it:
#          bash bench/gpu-remote.sh [OUTDIR] [--scale small|default]
#
# Writes OUTDIR/node.xz (this node, xz), OUTDIR/node_modules.tar.xz (npm ci --omit=dev of this
# lockfile plus webgpu@0.6.2 and @tensorflow/tfjs-backend-webgpu@4.22.0; Dawn's builds for other
# platforms, browser bundles, source maps and .d.ts removed; better-sqlite3's binding copied from
# ./node_modules, built for this node), OUTDIR/debs/*.deb (Debian's Vulkan loader and libglvnd's libGLdispatch,
# libGLX, libEGL, which NVIDIA's Vulkan ICD links to; each used there only when the system lacks it). About 45 MB in all. Needs: x86-64 Linux, npm registry and
# Debian mirror reachable, `npm ci` done here (for the better-sqlite3 binding).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR="$(realpath -m "${1:-tmp/gpu}")"
[ "$(uname -m)" = x86_64 ] || { echo "gpu-bundle: builds an x86-64 bundle; this is $(uname -m)" >&2; exit 1; }
BINDING=node_modules/better-sqlite3/build/Release/better_sqlite3.node
[ -f "$BINDING" ] || { echo "gpu-bundle: $BINDING missing: run npm ci here first" >&2; exit 1; }

mkdir -p "$OUTDIR/debs"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "gpu-bundle: npm run build" >&2
npm run --silent build

echo "gpu-bundle: production node_modules in $WORK" >&2
cp package.json package-lock.json "$WORK/"
(cd "$WORK" &&
  npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error &&
  npm install --no-save --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error \
    webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0)
NM="$WORK/node_modules"
find "$NM/webgpu/dist" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
[ -f "$NM/webgpu/dist/linux-x64/dawn.node" ] || { echo "gpu-bundle: webgpu has no linux-x64/dawn.node" >&2; exit 1; }
find "$NM/@tensorflow" \( -name '*.min.js' -o -name '*.es2017.js' -o -name '*.fesm.js' -o -name '*.html' \) -delete
rm -rf "$NM"/@tensorflow/*/dist/miniprogram
find "$NM" \( -name '*.map' -o -name '*.d.ts' \) -delete
mkdir -p "$NM/better-sqlite3/build/Release"
cp "$BINDING" "$NM/better-sqlite3/build/Release/"
# every package's entry point must still resolve after the pruning
(cd "$WORK" && node -e '
  for (const m of ["@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "@tensorflow/tfjs-backend-webgpu", "better-sqlite3", "@grpc/grpc-js", "@bufbuild/protobuf", "libsodium-wrappers", "@nestjs/core"]) require.resolve(m);
  require("better-sqlite3")(":memory:").close();')

echo "gpu-bundle: packing" >&2
tar -C "$WORK" -cf - node_modules | xz -T0 -6 > "$OUTDIR/node_modules.tar.xz"
xz -T0 -6 -c "$(command -v node)" > "$OUTDIR/node.xz"
node --version > "$OUTDIR/node.version"

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
APTDIR="$WORK/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main" > "$APTDIR/sources.list"
APT_OPTS=(-o "Dir::Etc::sourcelist=$APTDIR/sources.list" -o "Dir::Etc::sourceparts=/nonexistent"
  -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root" -o "APT::Architecture=amd64" -o "APT::Architectures=amd64")
apt-get "${APT_OPTS[@]}" -qq update >&2
rm -f "$OUTDIR"/debs/*.deb
# the Vulkan loader, and libglvnd's dispatch libraries that NVIDIA's Vulkan ICD (libGLX_nvidia.so.0) links to
(cd "$OUTDIR/debs" && apt-get "${APT_OPTS[@]}" -qq download libvulkan1 libglvnd0 libglx0 libegl1 >&2)

du -sh "$OUTDIR"/* "$OUTDIR"/debs/* >&2
echo "gpu-bundle: done; carry $OUTDIR and dist/ to the GPU machine and run bash bench/gpu-remote.sh ${1:-tmp/gpu}" >&2

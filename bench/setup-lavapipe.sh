#!/usr/bin/env bash
# Unpacks Mesa's software Vulkan driver (lavapipe) from Debian bookworm-backports into a private
# folder, without installing anything system-wide, so that `npm run bench -- gpu` can exercise the
# WebGPU training path (Dawn over Vulkan) on a machine without a GPU. See STACK.md: Debian 12's own
# Mesa 22.3 is rejected by the Dawn of npm `webgpu@0.6.2`; Mesa 25 from backports works.
#
# Usage:   bash bench/setup-lavapipe.sh [PREFIX]          (PREFIX defaults to /tmp/lavapipe)
#          eval "$(bash bench/setup-lavapipe.sh)"        (stdout: only the export lines)
# Then:    npm install --no-save webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0
#          FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1 npm run bench -- gpu
#
# Idempotent: a second run finds the unpacked driver and only prints the env lines.
# Needs: Debian 12 (bookworm) with apt, network access to the Debian mirror. No root needed (apt's
# state, lists and cache are redirected into PREFIX/.apt). Figures from this adapter are CPU-emulated
# and say nothing about GPU speed (bench/gpu.ts labels them `software: true`).
set -euo pipefail

PREFIX="${1:-/tmp/lavapipe}"
ICD="$PREFIX/usr/share/vulkan/icd.d/lvp_icd.json"   # Mesa 25 names it without the arch suffix
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

print_env() {
  echo "export VK_ICD_FILENAMES=$ICD"
  echo "export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
}

if [ -f "$ICD" ] && [ -e "$PREFIX/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" ] && [ -e "$PREFIX/usr/lib/x86_64-linux-gnu/libvulkan.so.1" ]; then
  echo "lavapipe already unpacked in $PREFIX" >&2
  print_env
  exit 0
fi

if [ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" != bookworm ]; then
  echo "setup-lavapipe: written for Debian 12 (bookworm); this is $(. /etc/os-release && echo "$PRETTY_NAME")" >&2
  exit 1
fi

APTDIR="$PREFIX/.apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs"
cat > "$APTDIR/sources.list" <<EOF
deb [signed-by=$KEYRING] $MIRROR bookworm-backports main
deb [signed-by=$KEYRING] $MIRROR bookworm main
EOF
APT_OPTS=(
  -o "Dir::Etc::sourcelist=$APTDIR/sources.list"
  -o "Dir::Etc::sourceparts=/nonexistent"
  -o "Dir::State::Lists=$APTDIR/lists"
  -o "Dir::Cache=$APTDIR/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
echo "setup-lavapipe: apt-get update (private lists in $APTDIR)" >&2
apt-get "${APT_OPTS[@]}" -qq update >&2

# Which packages (and versions) would an install of backports' Mesa Vulkan drivers add or upgrade on
# top of what this system has? (simulation only: -s changes nothing)
mapfile -t PKGS < <(apt-get "${APT_OPTS[@]}" -s install --no-install-recommends \
    mesa-vulkan-drivers/bookworm-backports libvulkan1 2>/dev/null |
  awk '/^Inst /{ v=$0; sub(/.*\(/, "", v); sub(/ .*/, "", v); print $2 "=" v }')
if [ "${#PKGS[@]}" -eq 0 ]; then
  echo "setup-lavapipe: apt resolved no packages to fetch (is mesa-vulkan-drivers from backports already installed system-wide?)" >&2
  exit 1
fi
echo "setup-lavapipe: fetching ${PKGS[*]}" >&2
(cd "$APTDIR/debs" && apt-get "${APT_OPTS[@]}" -qq download "${PKGS[@]}" >&2)

for deb in "$APTDIR"/debs/*.deb; do
  dpkg -x "$deb" "$PREFIX"
done

# The ICD manifest names the driver by a bare file name (found through the system library path);
# point it at the private copy by absolute path.
sed -i "s#\"library_path\": *\"[^\"]*libvulkan_lvp.so\"#\"library_path\": \"$PREFIX/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so\"#" "$ICD"
grep -q "$PREFIX/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" "$ICD" || { echo "setup-lavapipe: could not rewrite $ICD" >&2; exit 1; }

echo "lavapipe unpacked in $PREFIX" >&2
print_env

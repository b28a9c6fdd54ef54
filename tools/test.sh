#!/usr/bin/env bash
# Runs the whole test suite. GPU tests must not skip: when no GPU adapter is visible, this
# installs Mesa's software Vulkan (lavapipe) and GL (llvmpipe) first (needs root + apt), then
# runs every test with LFM_REQUIRE_GPU=1 so a missing adapter fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

have_sw_gpu() {
    # lavapipe's ICD and Mesa's EGL, as Debian packages them.
    ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ls /usr/lib/*/libEGL_mesa.so.0 >/dev/null 2>&1
}

if ! have_sw_gpu; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "tools/test.sh: installing Mesa lavapipe (software Vulkan) and llvmpipe (GL)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
    else
        echo "tools/test.sh: no software GPU found and cannot install one (need root and apt)." >&2
        echo "  Install mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri, or run on a GPU" >&2
        echo "  (then set LFM_TEST_BACKENDS, e.g. vulkan or metal)." >&2
    fi
fi

export LFM_REQUIRE_GPU="${LFM_REQUIRE_GPU:-1}"
# Mesa's EGL probes Wayland/X11 through XDG_RUNTIME_DIR; give it a private one (quiets its errors).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="$(mktemp -d)"
fi
cargo test --workspace "$@"

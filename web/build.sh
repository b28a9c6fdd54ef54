#!/usr/bin/env bash
# Builds the browser demo into web/dist/, a static folder any web server can host:
#   dist/index.html, app.js, lfm.js (the page-side API), worker.js (the engine's Web Worker),
#   style.css, pkg/ (the engine: wasm32 + wasm-bindgen glue), models/ (built-in models and
#   models.json, from web/models.json).
# Installs what it needs when missing: the wasm32 target (rustup), wasm-bindgen-cli at the
# version in Cargo.lock, and the npm packages of web/package.json (playwright-core, for the
# end-to-end test). Serve with `node web/serve.mjs` (http://127.0.0.1:8080/).
set -euo pipefail
WEB="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$WEB/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
say() { echo "web/build.sh: $*" >&2; }

# --- tools -------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing nodejs and npm"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        say "node and npm are needed (install Node.js 18+)"; exit 1
    fi
fi
if [ ! -f "$WEB/node_modules/.package-lock.json" ] || [ "$WEB/package-lock.json" -nt "$WEB/node_modules/.package-lock.json" ]; then
    say "npm ci"
    (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error)
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
fi
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$WB_VERSION" ]; then say "wasm-bindgen is not in Cargo.lock"; exit 1; fi
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WB_VERSION"; then
    say "installing wasm-bindgen-cli $WB_VERSION (a few minutes, once)"
    cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

# --- the engine ----------------------------------------------------------------------------
say "building the engine for wasm32"
cargo build --release -p lfm-web --target wasm32-unknown-unknown
rm -rf "$WEB/dist"
mkdir -p "$WEB/dist/pkg" "$WEB/dist/models"
wasm-bindgen --target web --no-typescript --out-dir "$WEB/dist/pkg" \
    "$TARGET_DIR/wasm32-unknown-unknown/release/lfm_web.wasm"

# --- the page and the built-in models -------------------------------------------------------
cp "$WEB"/www/* "$WEB/dist/"
node - "$ROOT" "$WEB/models.json" "$WEB/dist/models" <<'JS'
const fs = require('fs'), path = require('path');
const [root, list, out] = process.argv.slice(2);
const models = [];
for (const m of JSON.parse(fs.readFileSync(list, 'utf8'))) {
  const src = path.join(root, m.file);
  if (!fs.existsSync(src)) { console.error(`web/build.sh: skipping ${m.name}: ${m.file} not found`); continue; }
  const base = path.basename(src);
  fs.copyFileSync(src, path.join(out, base));
  models.push({ name: m.name, url: base, bytes: fs.statSync(src).size, note: m.note || '', mode: m.mode || 'chat' });
}
fs.writeFileSync(path.join(out, 'models.json'), JSON.stringify(models, null, 2) + '\n');
JS
say "built $(du -sh "$WEB/dist" | cut -f1) into web/dist/ (serve it: node web/serve.mjs)"

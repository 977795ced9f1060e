#!/usr/bin/env bash
# Re-vendor the dashboard's third-party browser assets from npm, pinned by web/package-lock.json.
# The image ships the copies in subscriber/dashboard/static/vendor (no Node.js at build or run
# time); VENDOR.json records each file's package, version, licence and SHA-256, and a unit test
# checks the copies against it.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd web && npm ci --ignore-scripts --no-audit --no-fund)
out=subscriber/dashboard/static/vendor
src=web/node_modules/uplot
version=$(node -p "require('./$src/package.json').version")
cp "$src/dist/uPlot.iife.min.js" "$src/dist/uPlot.min.css" "$out/"
cp "$src/LICENSE" "$out/uPlot.LICENSE"
python3 - "$out" "$version" <<'PY'
import hashlib, json, pathlib, sys
out, version = pathlib.Path(sys.argv[1]), sys.argv[2]
files = {
    name: hashlib.sha256((out / name).read_bytes()).hexdigest()
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE")
}
manifest = {"uplot": {"version": version, "license": "MIT", "source": "npm: uplot", "files": files}}
(out / "VENDOR.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY
echo "vendored uplot $version into $out"

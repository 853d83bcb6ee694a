#!/usr/bin/env bash
# Checks scripts/debian-packages.txt, the one list setup.sh installs from, against what
# the build and the programs really use, so that a package present on this machine by
# chance cannot hide a missing install step:
#   1. every listed package is installed (by exact name, dpkg-query);
#   2. the libclang bindgen loads at build time (a libclang.so or libclang-N.so, never
#      libclang-cpp) exists and comes from a listed package or one it depends on;
#   3. every shared library the built binaries (and the ONNX Runtime library the setup
#      fetched) load comes from a listed package, one it depends on, or the base system
#      (Priority required/important);
#   4. every program the daemon and tests run (espeak-ng, sox, chromium, tmux, cmake)
#      comes from a listed package.
# On the setup of 7fc3431 (libclang inferred from a file glob that the image's
# libclang-cpp14 satisfied) a new machine fails at 1 (libclang-dev not installed) and 2
# (no libclang.so at all).
# Usage: check-packages.sh [--for-tests] [TARGET_DIR]   (default target/debug)
# VTUBER_PACKAGE_LIST=FILE checks another list (to see what a trimmed list would miss).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
for_tests=false
target="$root/target/debug"
for arg in "$@"; do
  case "$arg" in
    --for-tests) for_tests=true ;;
    *) target="$arg" ;;
  esac
done

fail=0
problem() { echo "check-packages: $*" >&2; fail=1; }

listed=()
while read -r name when _; do
  case "$name" in ''|'#'*) continue ;; esac
  if [ "$when" = test ] && ! $for_tests; then continue; fi
  listed+=("$name")
done <"${VTUBER_PACKAGE_LIST:-$here/debian-packages.txt}"

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# 1. Listed packages are installed.
for p in "${listed[@]}"; do
  installed "$p" || problem "$p is listed in scripts/debian-packages.txt but not installed (run scripts/setup.sh)"
done

# The listed packages and everything they depend on, as installed here.
closure="$(apt-cache depends --recurse --installed --no-recommends --no-suggests \
  --no-conflicts --no-breaks --no-replaces --no-enhances "${listed[@]}" 2>/dev/null \
  | sed -n 's/^ *\(Pre\)\{0,1\}Depends: <\{0,1\}\([^>]*\)>\{0,1\}$/\2/p; s/^\([a-z0-9][^ ]*\)$/\1/p' \
  | sed 's/:.*//' | sort -u)"
provided_by_list() {
  local pkg="${1%%:*}"
  grep -qx -- "$pkg" <<<"$closure"
}
base_system() {
  local prio
  prio="$(dpkg-query -W -f='${Priority}' "$1" 2>/dev/null || true)"
  [ "$prio" = required ] || [ "$prio" = important ]
}
# The package owning a file; with merged /usr, dpkg may know it as /lib/... or /usr/lib/...
owner_of() {
  local p candidates=("$1")
  case "$1" in
    /usr/*) candidates+=("${1#/usr}") ;;
    *) candidates+=("/usr$1") ;;
  esac
  for p in "${candidates[@]}"; do
    local owner
    owner="$(dpkg-query -S "$p" 2>/dev/null | head -n1 | cut -d: -f1 | cut -d, -f1 || true)"
    if [ -n "$owner" ]; then echo "$owner"; return; fi
  done
}

# 2. The libclang bindgen needs.
found_clang=""
for lib in /usr/lib/llvm-*/lib/libclang.so /usr/lib/llvm-*/lib/libclang-*.so* /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*; do
  [ -e "$lib" ] || continue
  case "$lib" in *libclang-cpp*) continue ;; esac
  pkg="$(owner_of "$(readlink -f "$lib")")"
  if [ -n "$pkg" ] && provided_by_list "$pkg"; then found_clang="$lib ($pkg)"; break; fi
done
[ -n "$found_clang" ] || problem "no libclang.so from a listed package: bindgen (llama-cpp-sys-2) cannot build; list libclang-dev"

# 3. Shared libraries of the built programs.
check_libs() {
  local bin="$1" lib real pkg
  [ -e "$bin" ] || { problem "$bin not built"; return; }
  while read -r lib; do
    real="$(readlink -f "$lib")"
    pkg="$(owner_of "$real")"
    [ -n "$pkg" ] || pkg="$(owner_of "$lib")"
    if [ -z "$pkg" ]; then problem "$bin loads $lib, which no Debian package owns"; continue; fi
    provided_by_list "$pkg" || base_system "$pkg" \
      || problem "$bin loads $lib from $pkg, which scripts/debian-packages.txt does not bring in"
  done < <(ldd "$bin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}')
}
for b in vtuberd vtuber; do check_libs "$target/$b"; done
data_dir="${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/vtuber}"
ort="$data_dir/models/onnxruntime/libonnxruntime.so"
[ -e "$ort" ] && check_libs "$ort"

# 4. Programs run at run or test time.
programs=(espeak-ng cmake)
# The system's Python by path: the tests run it as another user, who cannot reach a
# per-user one (pyenv) that may come first in PATH.
$for_tests && programs+=(sox chromium tmux /usr/bin/python3)
for prog in "${programs[@]}"; do
  path="$(command -v "$prog" || true)"
  if [ -z "$path" ]; then problem "$prog not found (its package is not installed)"; continue; fi
  pkg="$(owner_of "$(readlink -f "$path")")"
  [ -n "$pkg" ] || pkg="$(owner_of "$path")"
  [ -n "$pkg" ] && provided_by_list "$pkg" || problem "$prog ($path) comes from '${pkg:-no package}', not from scripts/debian-packages.txt"
done

if [ "$fail" -ne 0 ]; then
  echo "check-packages: scripts/debian-packages.txt does not match what the build uses" >&2
  exit 1
fi
echo "check-packages: ok (${#listed[@]} packages; libclang: $found_clang)"

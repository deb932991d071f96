#!/usr/bin/env bash
# One place for the Debian packages colo's tests need. Run by `npm test` and by .ci/run.
# As root it installs whatever is missing; otherwise it names the missing packages, and the
# tests that need them skip, each saying which package is missing.
#   clang, lld, wasi-libc, libclang-rt-14-dev-wasm32 : build the C sample guests for wasm32-wasi
#   redis-tools                                      : redis-cli and redis-benchmark, real clients
#   iproute2                                         : `ip netns` for two-host tests
set -u
pkgs=(clang lld wasi-libc libclang-rt-14-dev-wasm32 redis-tools iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian packages present"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "${missing[@]}" >/tmp/colo-setup-apt.log 2>&1; then
    apt-get update -q >>/tmp/colo-setup-apt.log 2>&1
    apt-get install -y -q "${missing[@]}" >>/tmp/colo-setup-apt.log 2>&1 \
      || { echo "setup: apt-get failed, see /tmp/colo-setup-apt.log"; tail -20 /tmp/colo-setup-apt.log; }
  fi
else
  echo "setup: missing Debian packages: ${missing[*]} (run as root, or: apt-get install ${missing[*]}); tests that need them will skip"
fi
# Rebuild the sample guests from source when a compiler is present, so tests run on fresh builds.
if command -v clang >/dev/null && [ -f guests/Makefile ]; then
  make -s -C guests || { echo "setup: building guests failed"; exit 1; }
fi
exit 0

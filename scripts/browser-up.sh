#!/usr/bin/env bash
# Make sure headless Chromium is available (the dashboard's browser test needs it): install the Debian
# package `chromium` when `chromium` is not on PATH. Idempotent; says what it did.
set -uo pipefail
if command -v chromium >/dev/null; then
  echo "[browser-up] chromium present: $(command -v chromium) ($(chromium --version 2>/dev/null | head -1))"
  exit 0
fi
fail() { echo "[browser-up] $*" >&2; exit 1; }
command -v apt-get >/dev/null || fail "chromium is not on PATH and apt-get is missing: install Chromium so that \`chromium\` is on PATH"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || fail "chromium is not on PATH and installing it needs root (no sudo): apt-get install chromium"
  sudo=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
install=("${sudo[@]}" apt-get install -y -q --no-install-recommends chromium)
echo "[browser-up] installing the Debian package chromium"
if ! "${install[@]}"; then
  echo "[browser-up] install failed without a fresh package index: apt-get update, then retry"
  "${sudo[@]}" apt-get update -q || fail "apt-get update failed: cannot install chromium"
  "${install[@]}" || fail "apt-get install chromium failed"
fi
command -v chromium >/dev/null || fail "the chromium package is installed but \`chromium\` is not on PATH"
echo "[browser-up] installed: $(command -v chromium) ($(chromium --version 2>/dev/null | head -1))"

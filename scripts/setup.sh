#!/usr/bin/env bash
# Sets up everything the registry needs on Debian or Ubuntu, and nothing more:
#   - PostgreSQL and PostGIS from the OS package manager (skipped when present),
#   - with --dev, gdal-bin, wrk, docker-compose and chromium too (skipped when present),
#   - a Python virtual environment in .venv with the project installed.
# Usage: bash scripts/setup.sh          (to run the registry)
#        bash scripts/setup.sh --dev    (also the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "setup: need root or sudo to run: $*" >&2; exit 1
  fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -q
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

server_version() {
  # the newest PostgreSQL server whose binaries are installed
  ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sed -E 's#.*/postgresql/([0-9]+)/.*#\1#' \
    | sort -n | tail -n 1
}

if [ -z "$(server_version)" ]; then
  echo "setup: installing PostgreSQL"
  apt_install postgresql
fi
version="$(server_version)"
if [ ! -f "/usr/share/postgresql/$version/extension/postgis.control" ]; then
  echo "setup: installing PostGIS for PostgreSQL $version"
  apt_install "postgresql-$version-postgis-3"
fi

if [ -n "$extras" ]; then
  # tests only: GDAL's OGC API Features client, a Compose to check docker/compose.yml, and
  # Debian's Chromium (with a CJK font) for the web map's browser tests
  dev_packages=()
  command -v chromium >/dev/null 2>&1 || dev_packages+=(chromium)
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || dev_packages+=(fonts-wqy-microhei)
  command -v ogrinfo >/dev/null 2>&1 || dev_packages+=(gdal-bin)
  command -v wrk >/dev/null 2>&1 || dev_packages+=(wrk)  # HTTP load for bench/
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    dev_packages+=(docker-compose)
  fi
  if [ "${#dev_packages[@]}" -gt 0 ]; then
    echo "setup: installing ${dev_packages[*]}"
    apt_install "${dev_packages[@]}"
  fi
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed (found: $("$python" --version 2>&1))" >&2
  exit 1
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "setup: installing python3-venv"
  apt_install python3-venv
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
echo "setup: done (PostgreSQL $version with PostGIS; Python environment in .venv)"

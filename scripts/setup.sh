#!/usr/bin/env bash
# Set up everything sisock needs on a fresh Debian/Ubuntu machine (idempotent):
# system packages (mysqlclient, lm-sensors, npm; for the tests chromium, MariaDB's server binaries
# and systemd-analyze), a virtualenv in .venv, the project with all plugins' extras and the test
# tools, and the quick-look page's plotting library from npm. Safe to run again; quick when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null || need_apt+=(libmariadb-dev)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
# mysqlclient and sisock's own C extension (sisock_core._buckets) build against Python's headers
"${PYTHON:-python3}" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || need_apt+=(python3-dev)
# the sensors plugin's first source (it falls back to /sys/class/hwmon without it)
command -v sensors >/dev/null 2>&1 || need_apt+=(lm-sensors)
# npm installs the quick-look page's plotting library
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.sisock-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || [ sisock_core/_buckets.c -nt "$stamp" ]; then
  echo "setup: installing sisock with all extras into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all,test,bench]'
  touch "$stamp"
fi
# optional: without it (no C compiler), numpy computes the same summaries, slower
.venv/bin/python -c 'import sisock_core._buckets' 2>/dev/null ||
  echo "setup: note: sisock_core._buckets was not built (no C compiler?): summaries are computed by numpy (slower first scans)"

# The quick-look page's plotting library (uPlot) from the npm registry, as package-lock.json
# pins it; node_modules/ is not committed and the bridge serves it from there (no CDN).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing the quick-look page's plotting library (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null \
    || echo "setup: WARNING: npm ci failed; the quick-look page will say uPlot is missing" >&2
fi

# Debian's chromium and its driver run the quick-look page's browser tests
# (SISOCK_NO_BROWSER=1 leaves them out on a machine that only serves data). Where they
# cannot be had (Ubuntu ships chromium as a snap), warn and go on: those tests then fail
# saying what is missing.
if [ -z "${SISOCK_NO_BROWSER:-}" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing chromium and chromium-driver (for the browser tests)"
  if ! { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
         $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; }; then
    echo "setup: WARNING: cannot install chromium/chromium-driver; the browser tests will fail" >&2
  fi
fi

# What the tests need besides Python packages, none of it started as a service:
# - the g3 tests start a private MariaDB server of their own (tests/mariadb.py: its own data
#   directory, port and socket); they need the server binaries only: Debian's
#   mariadb-server-core (mariadbd, mariadb-install-db) and mariadb-client-core
#   (my_print_defaults), which have no system service, so nothing is left listening;
# - tests/test_systemd.py checks `sisock systemd`'s units with systemd-analyze (Debian's
#   systemd package; installing it does not make it the init system).
# If they cannot be installed, setup says which are missing and goes on; those tests then
# fail (or, for systemd-analyze, skip) saying so.
need_test=()
{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } || need_test+=(mariadb-server-core)
command -v mariadb-install-db >/dev/null 2>&1 || need_test+=(mariadb-server-core)
command -v my_print_defaults >/dev/null 2>&1 || need_test+=(mariadb-client-core)
command -v systemd-analyze >/dev/null 2>&1 || need_test+=(systemd)
if [ ${#need_test[@]} -gt 0 ]; then
  mapfile -t need_test < <(printf '%s\n' "${need_test[@]}" | sort -u)
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing ${need_test[*]} (for the tests: MariaDB binaries, systemd-analyze)"
  if ! { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
         $SUDO apt-get install -y -q --no-install-recommends "${need_test[@]}" >/dev/null; }; then
    echo "setup: WARNING: could not install ${need_test[*]}: the g3 tests that use MariaDB fail" \
         "without mariadbd, mariadb-install-db and my_print_defaults; the unit-file tests skip" \
         "without systemd-analyze" >&2
  fi
fi
echo "setup: ready (.venv/bin/sisock)"

#!/usr/bin/env bash
# Set up everything sisock needs on a fresh Debian/Ubuntu machine (idempotent):
# system packages (mysqlclient, lm-sensors, npm, chromium for the browser tests), a virtualenv
# in .venv, the project with all plugins' extras and the test tools, and the quick-look page's
# plotting library from npm. Safe to run again; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null || need_apt+=(libmariadb-dev)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
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
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing sisock with all extras into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all,test]'
  # autobahn imports bjdata, whose wheel is built against numpy 1.x and prints a
  # traceback under numpy 2 at every start: rebuild it from source against ours.
  if .venv/bin/python -c "import bjdata" 2>&1 | grep -q "_ARRAY_API"; then
    echo "setup: rebuilding bjdata against numpy 2"
    .venv/bin/python -m pip install -q --disable-pip-version-check setuptools wheel
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir --force-reinstall \
      --no-deps --no-build-isolation --no-binary bjdata "bjdata==$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("bjdata"))')"
  fi
  touch "$stamp"
fi

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

# `scripts/setup.sh --test-mariadb` (CI: .ci/run) also provides the MariaDB the g3 plugin's
# tests use: 127.0.0.1:3306, user root without password, installing mariadb-server and
# starting it when absent. For test machines only: it allows a passwordless root login over
# loopback TCP. If MariaDB cannot be had, it warns and goes on; the MariaDB tests then fail
# with a message saying so.
test_mariadb() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  up() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }
  if ! up; then
    if [ ! -x /usr/sbin/mariadbd ] && [ ! -x /usr/sbin/mysqld ]; then
      echo "setup: installing mariadb-server (for the g3 plugin's tests)"
      if ! { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
             $sudo apt-get install -y -q mariadb-server >/dev/null; }; then
        echo "setup: WARNING: cannot install mariadb-server; the MariaDB tests will fail" >&2
        return 0
      fi
    fi
    echo "setup: starting MariaDB"
    local daemon=/usr/sbin/mariadbd; [ -x "$daemon" ] || daemon=/usr/sbin/mysqld
    $sudo mkdir -p /run/mysqld && $sudo chown mysql:mysql /run/mysqld 2>/dev/null || true
    $sudo service mariadb start >/dev/null 2>&1 \
      || $sudo start-stop-daemon --start --oknodo --background --exec "$daemon" -- --user=mysql \
      || true
    for _ in $(seq 120); do up && break; sleep 0.5; done
  fi
  if ! up; then
    echo "setup: WARNING: MariaDB does not answer on 127.0.0.1:3306; the MariaDB tests will fail" >&2
    return 0
  fi
  local client; client=$(command -v mariadb || command -v mysql || true)
  if [ -n "$client" ] && ! "$client" -h127.0.0.1 -uroot -e "SELECT 1" >/dev/null 2>&1; then
    echo "setup: allowing root without password over 127.0.0.1 (test machine)"
    $sudo "$client" -uroot -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; \
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" \
      || echo "setup: WARNING: could not set up the root login; the MariaDB tests will fail" >&2
  fi
  echo "setup: MariaDB answers on 127.0.0.1:3306"
}
if [ "${1:-}" = "--test-mariadb" ]; then
  test_mariadb
fi
echo "setup: ready (.venv/bin/sisock)"

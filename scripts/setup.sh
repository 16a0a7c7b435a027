#!/usr/bin/env bash
# Set up everything toolserver needs on one machine; safe to run again (each step skips when done).
#   - the Python package and its dev tools (pip, editable install), the console's `ui` extra and Chromium
#   - a running Docker engine (Debian's docker.io when none is installed; needs root for that)
#   - PostgreSQL server binaries (for the registry's PostgreSQL tests)
#   - gVisor (runsc), registered with the engine as the runtime `runsc` (a reload, no engine restart)
#   - the sandbox image (built locally; skipped when the tagged image matches its inputs)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -q >/dev/null; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

say "python package (pip install -e .[dev])"
python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi  # put the `toolserver` command on PATH
if ! python3 -c "import gradio" >/dev/null 2>&1; then
  say "the console's extra (pip install -e .[ui]: gradio)"
  python3 -m pip install -q --disable-pip-version-check -e ".[ui]"
fi
if ! python3 -c "import e2b, e2b_code_interpreter" >/dev/null 2>&1; then
  say "the E2B front's extra (pip install -e .[e2b]: the e2b and e2b-code-interpreter SDKs)"
  python3 -m pip install -q --disable-pip-version-check -e ".[e2b]"
fi
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Chromium (the console's browser tests drive it headless; no browser download)"
  apt_install chromium
fi

if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing the Docker engine (docker.io)"
    apt_install docker.io
  fi
  say "starting dockerd"
  as_root sh -c 'setsid dockerd >/tmp/dockerd.log 2>&1 &'
  as_root touch /var/run/toolserver-started-dockerd  # this engine is ours: setup may reload its config
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/dockerd.log" >&2; tail -n 20 /tmp/dockerd.log >&2; exit 1; }
fi
say "docker engine: $(docker version --format '{{.Server.Version}}')"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing PostgreSQL server binaries"
  apt_install postgresql
fi
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  say "installing docker-compose (validates deploy/compose.yaml)"
  apt_install docker-compose
fi
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  say "installing HAProxy (for toolserver up --fast-ingress)"
  apt_install haproxy
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap (offline base image for the sandbox)"
  apt_install debootstrap
fi

if ! command -v runsc >/dev/null 2>&1; then
  say "installing gVisor (runsc)"
  apt_install runsc
fi
if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' \
   || ! python3 scripts/daemon_config.py --checkpoints-enabled; then
  if [ -e /var/run/toolserver-started-dockerd ]; then
    say "registering runsc and experimental mode (docker checkpoint) with the engine (/etc/docker/daemon.json, then a config reload)"
    as_root python3 scripts/daemon_config.py /etc/docker/daemon.json "$(command -v runsc)"
    as_root kill -HUP "$(cat /var/run/docker.pid)"
    for _ in $(seq 1 20); do docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' && break; sleep 0.5; done
    if ! python3 scripts/daemon_config.py --checkpoints-enabled; then
      # A reload turns experimental mode on in `docker info` only: the checkpoint routes need a fresh start.
      say "restarting the engine this setup started (docker checkpoint needs experimental mode at start)"
      as_root kill "$(cat /var/run/docker.pid)"
      for _ in $(seq 1 60); do [ -e /var/run/docker.pid ] || break; sleep 0.5; done
      as_root sh -c 'setsid dockerd >>/tmp/dockerd.log 2>&1 &'
      for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
      docker info >/dev/null 2>&1 || { echo "dockerd did not start again; see /tmp/dockerd.log" >&2; exit 1; }
    fi
  else
    say "this Docker engine lacks runsc or experimental mode; to use TOOLSERVER_SANDBOX_RUNTIME=runsc (and pause with memory) add"
    python3 scripts/daemon_config.py --print "$(command -v runsc)"
    say "to the engine's daemon.json and restart it (a reload adds runsc, but docker checkpoint needs experimental mode at start)"
  fi
fi
say "sandbox runtimes: $(docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}')"

say "sandbox image"
python3 -m toolserver.cli image build

# The server image: `toolserver up` (Ray, Ray Serve and the HTTP API), or a plain Ray node of a cluster
# (`ray start ...`, see deploy/README.md). It holds no Docker engine and no docker CLI: the server drives the
# engine of its host through the Docker API socket mounted at run time.
#
# Build it with `toolserver image build --server`, which assembles this build context with no network
# needed inside the build:
#   Dockerfile        this file
#   requirements.txt  this project's dependencies (with the `postgres` extra)
#   wheels/           those dependencies, `pip download --only-binary=:all:` on the host for the base
#                     image's Python and architecture
#   project/          this project's wheel (`pip wheel --no-deps .` on the host)
# The dependencies are installed before the project, so a change of the source reuses their layers.
#
# Run it (one machine; deploy/README.md explains each flag and the trade-off of the socket):
#   docker run --init --network host --shm-size 2g \
#     -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /srv/tsbx:/srv/tsbx -e TMPDIR=/srv/tsbx -v toolserver-data:/data toolserver:latest
#
# Written for the classic builder (no BuildKit mounts): the dependency wheels are installed in a throwaway
# stage and only the installed files are copied on, so those wheels never reach the final layers.

ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS install
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
COPY requirements.txt /wheels/requirements.txt
COPY wheels/ /wheels/
# --root stages the files under /staging with the base's own layout (site-packages or Debian's
# dist-packages); --ignore-installed keeps pip from trying to uninstall the base's packages.
# Ray's Java worker jars (no Java workers here) and numpy's test suite: ~50 MB nobody runs.
RUN set -eu; \
    python3 -m pip install --no-index --find-links /wheels --no-cache-dir --ignore-installed \
        --no-warn-script-location --root /staging -r /wheels/requirements.txt; \
    find /staging -type d \( -path '*-packages/ray/jars' -o -path '*-packages/numpy/*/tests' \) \
        -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
COPY --from=install /staging/ /
# The server's uid is never a sandbox's: it owns each sandbox's /sbx and keeps it read-only to them, and a
# sandbox with its uid could make it writable again. Sandboxes run as 1000, so under this server (1000) they
# run as 1001 (sandbox/docker.py picks the next uid; the sandbox image has users for both).
RUN set -eu; \
    command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python; \
    groupadd --gid 1000 toolserver; \
    useradd --uid 1000 --gid 1000 --create-home --home-dir /home/toolserver --shell /bin/bash toolserver; \
    mkdir -p /data; \
    chown 1000:1000 /data; \
    chmod 0700 /data
# The project last, straight into this stage: a change of the source rebuilds only these two small layers
# (the wheel, ~250 kB, stays in the COPY layer) and leaves no intermediate image behind.
COPY project/ /tmp/project/
RUN set -eu; \
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip \
        install --no-index --no-deps --no-cache-dir --no-warn-script-location /tmp/project/*.whl; \
    rm -rf /tmp/project; \
    command -v toolserver >/dev/null

# TMPDIR also places the sandboxes' runtime directory ($TMPDIR/tsbx-1000), which must be mounted at the same
# path as on the host; RAY_TMPDIR keeps Ray's own files in the container's /tmp whatever TMPDIR is.
ENV TOOLSERVER_HOME=/data \
    RAY_TMPDIR=/tmp \
    RAY_USAGE_STATS_ENABLED=0 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 1000:1000
WORKDIR /home/toolserver
# 8000: the HTTP API (Ray Serve); 6379: the Ray head's GCS; 8265: the Ray dashboard (KubeRay needs it)
EXPOSE 8000 6379 8265
ENTRYPOINT ["toolserver"]
CMD ["up", "--host", "0.0.0.0", "--no-image-build"]

# scopegate container image.
#
#   docker build -t scopegate:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -p 8080:8080 -p 9100:9100 \
#     -v "$PWD/config:/etc/scopegate:ro" scopegate:0.1.0
#
# The configuration is read from /etc/scopegate/scopegate.yaml (SCOPEGATE_CONFIG); mount its
# directory rather than the file, so that an edited file is what SIGHUP reloads
# (`docker kill -s HUP`). It must set `admin_listen: 0.0.0.0:9100` for the admin port to be
# reachable from outside the container (probes, Prometheus); the HEALTHCHECK reaches it on
# loopback either way (set SCOPEGATE_HEALTHCHECK_URL if the configuration moves it).
# More processes per container: `-e SCOPEGATE_WORKERS=2`, or `serve --workers 2` after the image
# (arguments after the image replace CMD). SIGTERM drains for up to 30 s: `docker stop -t 40`.

# Build stage: a virtual environment with the locked runtime dependencies, then scopegate itself.
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
RUN python -m venv /opt/scopegate

# Dependencies first, in their own layer: it is rebuilt only when the lock file changes.
COPY requirements/runtime.lock requirements/runtime.lock
RUN /opt/scopegate/bin/pip install --no-cache-dir --require-hashes --no-deps \
        -r requirements/runtime.lock

COPY pyproject.toml README.md ./
COPY src/ src/
RUN /opt/scopegate/bin/pip install --no-cache-dir --no-deps . \
    && /opt/scopegate/bin/python -m compileall -q /opt/scopegate/lib

# Runtime stage: the virtual environment and nothing else; no compiler, no pip cache.
FROM python:3.11-slim

# A fixed numeric user, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 scopegate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin scopegate

COPY --from=builder /opt/scopegate /opt/scopegate

# Bytecode was compiled at build time, so nothing is written under / at run time: the root file
# system can be read-only. The only writable place needed is /tmp (a tmpfs or emptyDir), where
# `serve --workers N` keeps its multi-process metrics.
ENV PATH=/opt/scopegate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    SCOPEGATE_CONFIG=/etc/scopegate/scopegate.yaml \
    SCOPEGATE_WORKERS=1 \
    SCOPEGATE_HEALTHCHECK_URL=http://127.0.0.1:9100/healthz

USER 10001:10001

EXPOSE 8080 9100

# No curl in the slim image: Python's urllib is the client. Any answer but 2xx, or none, fails.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SCOPEGATE_HEALTHCHECK_URL'], timeout=2)"]

# Exec form: scopegate is PID 1 and receives SIGTERM and SIGHUP itself.
ENTRYPOINT ["scopegate"]
CMD ["serve"]

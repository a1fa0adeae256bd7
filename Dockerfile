# The skyctl controller image (see docs/kubernetes.md and manifests/kubernetes/).
#   docker build -t skyctl:0.1.0 .
# It runs `skyctl controller run` on all interfaces; state lives in $SKYCTL_HOME
# (/data, a PersistentVolumeClaim in the manifests). The router is the compiled
# build (SKYCTL_COMPILE=1, mypyc; docs/router.md), made in a first stage that has
# a C compiler, so the image itself carries none.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY setup.py setup.cfg pyproject.toml README.md LICENSE ./
COPY tools ./tools
COPY skyctl ./skyctl
COPY providers ./providers
COPY policies ./policies
RUN SKYCTL_COMPILE=1 pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SKYCTL_HOME=/data

COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/skyctl-*.whl)[kubernetes]" \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /data skyctl \
    && mkdir -p /data \
    && chown skyctl:skyctl /data

USER 10001:10001
WORKDIR /data
EXPOSE 8000 8081 8082 8083
CMD ["skyctl", "controller", "run", "--host", "0.0.0.0", "--port", "8000"]

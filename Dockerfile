# The skyctl controller image (see docs/kubernetes.md and manifests/kubernetes/).
#   docker build -t skyctl:0.1.0 .
# It runs `skyctl controller run` on all interfaces; state lives in $SKYCTL_HOME
# (/data, a PersistentVolumeClaim in the manifests).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SKYCTL_HOME=/data

WORKDIR /src
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY skyctl ./skyctl
COPY providers ./providers
COPY policies ./policies
RUN pip install '.[kubernetes]' \
    && rm -rf /src \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /data skyctl \
    && mkdir -p /data \
    && chown skyctl:skyctl /data

USER 10001:10001
WORKDIR /data
EXPOSE 8000 8081 8082 8083
CMD ["skyctl", "controller", "run", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# kefu-pulse worker image: `kefu-pulse worker|simulate|replay|demo` (ENTRYPOINT kefu-pulse).
#
#   docker build -t kefu-pulse:local .
#   docker run --rm -e KEFU_BROKER=kafka://kafka:9092 -p 6066:6066 kefu-pulse:local worker
#
# Not built in this repository's CI (no Docker engine there): tests/deploy/test_compose.py lints
# it with hadolint and checks what it copies. faust-streaming has no aarch64 wheel, so the build
# stage carries a compiler; the runtime stage gets only the finished virtualenv.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# README.md* so the build works before the README exists (pyproject names it as the readme).
# The dependencies come from the lock (exact versions, hashes checked), then the package alone.
COPY pyproject.toml requirements.lock README.md* ./
COPY streams ./streams
RUN python -m venv /opt/kefu-pulse \
    && /opt/kefu-pulse/bin/pip install --require-hashes -r requirements.lock \
    && /opt/kefu-pulse/bin/pip install . --no-deps \
    && /opt/kefu-pulse/bin/kefu-pulse --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kefu-pulse" \
      org.opencontainers.image.description="Live e-commerce customer-service KPIs: Kafka -> Faust -> Prometheus" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kefu-pulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KEFU_WEB_HOST=0.0.0.0 \
    KEFU_WEB_PORT=6066 \
    KEFU_DATA_DIR=/var/lib/kefu-pulse
COPY --from=build /opt/kefu-pulse /opt/kefu-pulse
# A fixed numeric uid/gid so Kubernetes can check runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 kefu \
    && useradd --system --uid 10001 --gid kefu --home-dir /var/lib/kefu-pulse \
       --shell /usr/sbin/nologin kefu \
    && mkdir -p /var/lib/kefu-pulse /etc/kefu-pulse \
    && chown kefu:kefu /var/lib/kefu-pulse
USER 10001:10001
WORKDIR /var/lib/kefu-pulse
EXPOSE 6066
# No HEALTHCHECK here: the same image runs `simulate`, which serves no HTTP. The worker's
# probes are /healthz (liveness) and /readyz (readiness): see docker-compose.yml and deploy/k8s.
ENTRYPOINT ["kefu-pulse"]
CMD ["worker"]

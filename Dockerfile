# hlsproxy: a drop-in replacement for the acexy image.
# Any image with Python >= 3.11 and pip will do as the base: docker build --build-arg BASE=...
ARG BASE=python:3.12-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ACEXY_LISTEN_ADDR=:8080 \
    ACEXY_SCHEME=http \
    ACEXY_HOST=localhost \
    ACEXY_PORT=6878 \
    ACEXY_M3U8=false \
    ACEXY_M3U8_STREAM_TIMEOUT=60s \
    ACEXY_EMPTY_TIMEOUT=1m \
    ACEXY_BUFFER_SIZE=64MiB \
    ACEXY_NO_RESPONSE_TIMEOUT=10s \
    ACEXY_LOG_LEVEL=INFO

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY hlsproxy ./hlsproxy
# A numeric user, so that Kubernetes' runAsNonRoot can tell it is not root without a passwd.
RUN python3 -m pip install --no-cache-dir . \
    && rm -rf /src \
    && groupadd --system --gid 10001 hlsproxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home hlsproxy

WORKDIR /
USER 10001:10001
EXPOSE 8080
# Probes the proxy's own liveness endpoint on whatever ACEXY_LISTEN_ADDR says; it never
# touches the engine, so zapping between channels cannot make the container "unhealthy".
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["hlsproxy", "-healthcheck"]
ENTRYPOINT ["hlsproxy"]

# The gateway (and the device simulator) for docker-compose.yml: python:3.12-slim, the runtime dependencies
# pinned by requirements.lock (used as constraints, so the dev tools it also pins stay out), then the package.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY gateway ./gateway
COPY device_sim ./device_sim
RUN pip install --constraint requirements.lock . \
    && useradd --system --uid 10001 --home-dir /data gateway \
    && mkdir -p /data /config \
    && chown gateway /data

USER gateway
WORKDIR /data
VOLUME /data
EXPOSE 9108

# Ready = connected to the broker and every sink writing; slim has no curl. Needs http.host 0.0.0.0 or
# 127.0.0.1 and http.port 9108 (config/gateway.compose.yaml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/readyz', timeout=3)"]

CMD ["gateway", "run", "--config", "/config/gateway.yaml"]

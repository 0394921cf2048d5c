# One image for every component: `python -m pdm_<service>` (ingest, anomaly, prediction,
# simulator, gateway), `pdm migrate`, `pdm topics ensure`, and `mlflow server` (mlflow is a
# locked dependency). `COPY services` takes every service package. The command is chosen
# by docker-compose.yml / the Kubernetes manifests; the image carries no models (they come from
# the MLflow registry at run time) and no state.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: resolve nothing, install exactly the lock -------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN python -m pip install "uv>=0.5,<1" \
    && python -m venv /opt/venv
WORKDIR /src
# Dependencies first (their layer survives source edits), pinned by the lock.
COPY requirements.lock ./
RUN uv pip install --no-cache --python /opt/venv/bin/python -r requirements.lock
# Then the project itself, without touching the locked dependency set.
COPY pyproject.toml ./
COPY libs ./libs
COPY services ./services
COPY tools ./tools
RUN uv pip install --no-cache --python /opt/venv/bin/python --no-deps . \
    && /opt/venv/bin/pdm --help >/dev/null

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pdm-platform" \
      org.opencontainers.image.description="Predictive-maintenance platform services" \
      org.opencontainers.image.licenses="Apache-2.0"
# Fixed uid/gid 10001: the Kubernetes securityContext (runAsUser) relies on it.
RUN groupadd --system --gid 10001 pdm \
    && useradd --system --uid 10001 --gid pdm --home-dir /home/pdm --create-home \
       --shell /usr/sbin/nologin pdm \
    && mkdir -p /var/lib/pdm/mlflow \
    && chown -R pdm:pdm /var/lib/pdm
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PDM_STATE_DIR=/tmp/pdm
USER 10001:10001
WORKDIR /home/pdm
# 8000 gateway (API, /docs); 8001 ingest, 8002 anomaly, 8003 prediction, 8009 simulator
# (/health, /ready, /metrics); 5000 when run as the MLflow server.
EXPOSE 8000 8001 8002 8003 8009 5000
ENTRYPOINT []
CMD ["pdm", "--help"]

# syntax=docker/dockerfile:1
# ECG Lens: one image runs the API, a Celery worker, or the one-shot migration (see deploy/entrypoint.sh).
#
#   CPU image:   docker build -t ecglens:cpu .
#   CUDA image:  docker build -t ecglens:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# The torch wheel index is the only difference: the CUDA wheels bring their own CUDA runtime (nvidia-* wheels),
# so the host needs only the NVIDIA driver and the NVIDIA Container Toolkit. Everything is downloaded here, at
# build time; nothing at run time downloads. No secret enters a layer: settings come from the environment
# (.env via docker compose), and .dockerignore keeps .env, data and the virtualenv out of the build context.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------------
# build: a virtualenv in /opt/venv with torch from the chosen index, then the project and its dependencies.
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from its own index: installed later from PyPI it would pull the default (CUDA) build.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
# Dependencies before the source, so an edit to the code does not reinstall them (pyproject rarely changes).
WORKDIR /app
COPY pyproject.toml README.md ./
RUN mkdir -p backend/ecglens && touch backend/ecglens/__init__.py \
 && pip install . \
 && pip uninstall -y ecglens \
 && rm -rf backend build
COPY backend ./backend
# Editable, so the image has the repository's layout: /app/backend (code), /app/models (trained weights and
# cards), /app/frontend, found beside the code exactly as in a checkout. The runtime stage copies the same tree.
RUN pip install --no-deps -e . && rm -rf build backend/*.egg-info

# ---------------------------------------------------------------------------------------------------------------
# runtime: the virtualenv, the models and the static frontend; runs as an unprivileged user.
FROM ${PYTHON_IMAGE} AS runtime
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
LABEL org.opencontainers.image.title="ECG Lens" \
      org.opencontainers.image.description="Explain and stress-test black-box ECG classifiers" \
      org.opencontainers.image.licenses="MIT" \
      org.ecglens.torch-index="${TORCH_INDEX_URL}"
RUN groupadd --system --gid 10001 ecglens \
 && useradd --system --uid 10001 --gid ecglens --home-dir /var/lib/ecglens --shell /usr/sbin/nologin ecglens \
 && install -d -o ecglens -g ecglens -m 0750 /var/lib/ecglens
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The trained models are baked in (read-only, owned by root): the image is the unit that is validated.
COPY backend ./backend
COPY models ./models
COPY frontend ./frontend
COPY deploy ./deploy
# Byte-compile as root: the unprivileged user cannot write __pycache__ under /app.
RUN chmod 0755 deploy/*.sh && python -m compileall -q /app/backend
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ECGLENS_DATA_DIR=/var/lib/ecglens \
    API_HOST=0.0.0.0 \
    API_PORT=8000
USER ecglens:ecglens
VOLUME ["/var/lib/ecglens"]
EXPOSE 8000
# GET /api/v1/healthz with the standard library (the slim image has no curl). Workers and the one-shot
# migration override this in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
  CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["api"]

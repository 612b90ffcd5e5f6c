# syntax=docker/dockerfile:1
# sqsnn job service: API (uvicorn), Celery workers and the migration step share this image.
# Install steps are the Makefile's: torch pinned first, then the package with its extras.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# the CPU build: plain PyPI serves Linux a multi-GB CUDA one
RUN pip install torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY sqsnn ./sqsnn
COPY backends ./backends
COPY workers ./workers
COPY service ./service
RUN pip install ".[all]"

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SQSNN_HOME=/data \
    OMP_NUM_THREADS=1
RUN groupadd --system --gid 10001 sqsnn \
    && useradd --system --uid 10001 --gid sqsnn --home-dir /app --shell /usr/sbin/nologin sqsnn \
    && mkdir -p /app /data && chown sqsnn:sqsnn /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=sqsnn:sqsnn alembic.ini ./
COPY --chown=sqsnn:sqsnn migrations ./migrations
USER sqsnn
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
# keep-alive above the 60 s idle timeout of common load balancers and clients' pools: a connection the server
# closes just as a client reuses it fails that request (seen under load with uvicorn's default of 5 s)
CMD ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", \
     "--timeout-keep-alive", "75"]

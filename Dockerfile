# txmon worker / retrain-controller image. CPU build by default; --build-arg EXTRAS=gpu for CUDA
# (base it on an nvidia/cuda runtime image for that). Not built in this repository's CI: no Docker
# engine runs there; tests/unit/test_compose.py validates the compose file against the spec.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TXMON_HOME=/var/lib/txmon
ARG EXTRAS=cpu
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY txmon ./txmon
COPY models ./models
COPY streams ./streams
COPY retrain ./retrain
RUN pip install -c constraints.txt ".[${EXTRAS}]" \
 && useradd --system --uid 10001 --home /var/lib/txmon txmon \
 && mkdir -p /var/lib/txmon && chown txmon /var/lib/txmon
USER txmon
VOLUME ["/var/lib/txmon"]
ENTRYPOINT ["txmon"]
CMD ["worker"]

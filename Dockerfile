# amplify-monitor: `docker build -t registry.example.com/amplify-monitor:0.1.0 .`
# Stage 1 builds the project's wheel and the wheels of its dependencies; stage 2 installs them
# into a slim Python with nothing else, to run as uid 65532 on a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="amplify-monitor" \
      org.opencontainers.image.description="Watches every AWS Amplify Hosting app and branch: Prometheus metrics, Slack alerts, deploy-and-wait from CI." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels amplify-monitor==0.1.0 \
    && rm -rf /wheels \
    && mkdir -p /var/lib/amplify-monitor /etc/amplify-monitor \
    && chown 65532:65532 /var/lib/amplify-monitor \
    && chmod 0700 /var/lib/amplify-monitor
# No .pyc writes (the root filesystem may be read-only); logs straight to the collector.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The SQLite state (state.path's default is relative: it lands here).
VOLUME ["/var/lib/amplify-monitor"]
WORKDIR /var/lib/amplify-monitor
USER 65532:65532
EXPOSE 9853
# /healthz answers 200 while the process is alive (the config must listen on 0.0.0.0:9853 to be
# scraped from outside the container; the check itself goes to loopback).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9853/healthz', timeout=4)"]
ENTRYPOINT ["amplify-monitor"]
CMD ["run", "--config", "/etc/amplify-monitor/config.toml"]

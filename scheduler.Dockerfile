# Zephyr scheduler image. Build from the repository root: docker build -f scheduler.Dockerfile .
# The first stage is the same in scheduler, coordinator and worker.Dockerfile (a test keeps it so):
# the builder's cache builds it once for the three images.
FROM python:3.11-slim AS install
WORKDIR /src
# Dependencies first, read from pyproject.toml alone, so that a source change reuses this layer.
# Containers always have ZEPHYR_DATABASE_URL: the embedded server of `zephyr up` stays out; the
# `otel` extra goes in (spans are exported once OTEL_EXPORTER_OTLP_ENDPOINT is set).
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
open('/tmp/build.txt', 'w').write('\n'.join(p['build-system']['requires'])); \
open('/tmp/run.txt', 'w').write('\n'.join([d for d in p['project']['dependencies'] if 'pgserver' not in d] \
+ p['project']['optional-dependencies']['otel']))" \
 && pip install --no-cache-dir -r /tmp/build.txt \
 && python -m venv /opt/zephyr \
 && /opt/zephyr/bin/pip install --no-cache-dir -r /tmp/run.txt
COPY setup.py MANIFEST.in README.md ./
COPY proto ./proto
COPY data ./data
COPY zephyr ./zephyr
# The wheel's build generates the gRPC code and packs the SQL; the image gets the wheel, not this tree.
RUN pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels . \
 && /opt/zephyr/bin/pip install --no-cache-dir --no-deps /wheels/zephyr-*.whl \
 && /opt/zephyr/bin/pip uninstall --yes setuptools pip

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin zephyr
COPY --from=install /opt/zephyr /opt/zephyr
ENV PATH=/opt/zephyr/bin:$PATH PYTHONUNBUFFERED=1 ZEPHYR_LOG_FORMAT=json
USER 10001
WORKDIR /tmp
ENV ZEPHYR_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# `python -m` skips the CLI's other imports: the probe stays quick on a busy host.
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-m", "zephyr.cli.probe", "scheduler"]
ENTRYPOINT ["zephyr", "scheduler"]

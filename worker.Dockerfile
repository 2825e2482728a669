# Zephyr worker. Build from the repository root: docker build -f worker.Dockerfile .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY zephyr ./zephyr
RUN pip install --no-cache-dir build==1.2.2 grpcio-tools==1.85.1 \
 && python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. proto/zephyr/v1/*.proto \
 && python -m build --wheel --outdir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 zephyr
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
USER 10001
ENV ZEPHYR_LOG_FORMAT=json PYTHONUNBUFFERED=1
EXPOSE 9100
ENTRYPOINT ["zephyr", "worker"]

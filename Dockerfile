# The operator image the chart runs. Not built by CI (no container engine there); the
# tests run the same `aigate run` entry point as a process.
FROM python:3.11-slim
RUN useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin aigate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
USER 65532:65532
ENTRYPOINT ["aigate"]
CMD ["run"]

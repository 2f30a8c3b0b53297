# The judgeline worker image (deploy/compose, deploy/k8s). CPU torch for training commands; inference runs in Triton.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY judge_engine judge_engine
COPY streams streams
COPY stack stack
COPY operations operations
COPY doubles doubles
COPY cli cli
COPY triton_models triton_models
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu . \
    && useradd --create-home judgeline
USER judgeline
EXPOSE 6066
CMD ["judgeline", "--help"]

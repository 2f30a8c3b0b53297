# The judgeline worker image (infra/compose, infra/k8s). CPU torch for training commands; inference runs in Triton.
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
# The Triton model template: `pip install .` does not package it, so schemas/paths.py is told where it is; exported
# versions go to JUDGELINE_STACK__MODEL_REPOSITORY (the volume Triton serves) or, by default, beside the template.
COPY triton_models triton_models
ENV JUDGELINE_TRITON_MODELS=/app/triton_models \
    JUDGELINE_STACK__STATE_DIR=/home/judgeline/.judgeline
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu . \
    && useradd --create-home judgeline \
    && chown -R judgeline /app/triton_models
USER judgeline
EXPOSE 6066
CMD ["judgeline", "--help"]

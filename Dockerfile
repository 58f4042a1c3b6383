# The pipeline image: Vertex AI Pipelines runs every step in it, Vertex AI Training runs the
# Trainer in it and Dataflow starts its Beam workers from it (--sdk_container_image).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/movierec:TAG .
#
# Versions come from pyproject.toml alone (`pip install .`); tests/pipeline/test_image_pins.py
# fails when a version written here contradicts it (the Beam tag must equal the apache-beam pin).
FROM apache/beam_python3.10_sdk:2.59.0 AS beam

FROM python:3.10-slim

# Dataflow launches workers through Beam's boot binary; Vertex AI sets its own command.
COPY --from=beam /opt/apache/beam /opt/apache/beam

ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pipeline.kubeflow_v2_runner.IMAGE_WORKDIR: the compiled spec reads the schema from here.
WORKDIR /movierec
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY components components
COPY data data
COPY evaluation evaluation
COPY trainer trainer
COPY publish publish
COPY serving serving
RUN pip install ".[kubeflow]"

ENTRYPOINT ["/opt/apache/beam/boot"]

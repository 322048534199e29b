# The pipeline image for Kubeflow (kubeflow/README.md): the TFX base image, which holds
# the executor entry point every task of the compiled spec runs
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor),
# plus this project installed as the one package recsys_tfx, with the same pinned stack
# as the local .venv; its source (configs, schemas) also stays at /pipeline
# (configs/kubeflow.yaml: image_repo_root).
#
#   docker build -t gcr.io/my-project/recsys-tfx:0.1.0 .
#   docker push gcr.io/my-project/recsys-tfx:0.1.0
ARG BEAM_VERSION=2.74.0

# Beam's SDK harness boot program, so the image can also be Dataflow's / Flink's worker
# image (--sdk_container_image), from the Beam release this stack pins.
FROM apache/beam_python3.10_sdk:${BEAM_VERSION} AS beam

FROM gcr.io/tfx-oss-public/tfx:1.16.0
# TFX 1.16 requires Python < 3.11 and the pins are for 3.10: fail here, not in a pod.
RUN python -c "import sys; assert sys.version_info[:2] == (3, 10), sys.version"

WORKDIR /pipeline
# Dependencies first: this layer is rebuilt only when the pins change.
COPY requirements.txt constraints.txt ./
RUN python -m pip install --no-cache-dir -r requirements.txt

COPY --from=beam /opt/apache/beam /opt/apache/beam
COPY . .
RUN python -m pip install --no-cache-dir --no-deps .

# What cli/env.py sets for the `recsys` command, for every process of the image:
# KFP tasks start TFX's executor entry point, not ours, and Beam workers start through boot.
ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=3 \
    GLOG_minloglevel=2
# Beam workers start through boot; KFP tasks name their own command, so this does not
# affect them.
ENTRYPOINT ["/opt/apache/beam/boot"]

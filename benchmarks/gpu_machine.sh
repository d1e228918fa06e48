#!/usr/bin/env bash
# Issue 22, item 5, on the GPU test machine (../shared/facts/gpu-machine.md says what is
# there): after the staging calls of ../shared/tools/gpu-stage.sh have gathered
# .device-carry/ort/part* in $HOME/stage, install ONNX Runtime GPU and this checkout's
# wheel, then run benchmarks/gpu_check.py on ResNet-18; its table and gpu_check.json go
# to $OUT (the device tool brings them back).
#   bash benchmarks/gpu_machine.sh        (from the project root, with .device-carry carried)
set -euo pipefail
repo=$(pwd)
site=$HOME/site
mkdir -p "$site"
python3 -m pip install -q --no-index --no-deps --target "$site" .device-carry/whl/*.whl
cat "$HOME"/stage/part* | zstd -dc | tar x -C "$site"
export PYTHONPATH=$site
LD_LIBRARY_PATH=$(python3 -c "import glob, os, sys; print(':'.join(sorted({os.path.dirname(p) for p in glob.glob(sys.prefix + '/lib/python3*/site-packages/nvidia/**/lib*.so*', recursive=True)})))")
export LD_LIBRARY_PATH
cd /tmp  # outside the source tree: its edgeloop/ folder would shadow the installed package
python3 -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
out=${OUT:-/tmp/gpu-check-out}
mkdir -p "$out"
python3 "$repo/benchmarks/gpu_check.py" --runs 500 --out "$out" | tee "$out/gpu_check.txt"

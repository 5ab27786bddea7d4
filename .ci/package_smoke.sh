#!/usr/bin/env bash
# CI: the package is the product. Build the wheel, install it into a fresh virtual environment outside the checkout,
# and from another folder run what the README promises a pip install gives: the `solov2` command (version, zoo,
# train, predict with no config, export to ONNX and predict from it with no config), the one-call Predictor (equal to
# DefaultPredictor), then tools/train_net.py and demo/demo.py from the clone. Tiny sizes: a few minutes on 2 cores.
#
# The fresh environment reuses the dependencies already installed in the calling environment (a .pth file naming its
# site-packages: a second torch install would cost minutes and 5 GB) and installs the wheel with --no-index, so a
# requirement the calling environment does not satisfy fails here instead of being downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/solov2_package_smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step() {  # run a command, show it and the last lines it printed; stop on failure with its whole output
    echo "\$ $*"
    if ! "$@" >"$WORK/step.log" 2>&1; then
        cat "$WORK/step.log"
        echo "FAILED: $*"
        exit 1
    fi
    tail -n "${TAIL:-3}" "$WORK/step.log" | cut -c1-200 | sed 's/^/    /'
}

echo "== build the wheel and install it into a fresh environment ($WORK)"
python -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" .
rm -rf build solov2.egg-info
deps=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" | {
    read -r site; echo "$deps" >"$site/_solov2_ci_dependencies.pth"; }
# The venv's own (older) setuptools would shadow the one torch requires.
"$WORK/venv/bin/python" -m pip uninstall -q -y setuptools
"$WORK/venv/bin/python" -m pip install -q --no-index "$WORK"/dist/solov2-*.whl

echo "== from another folder, with only the installed package"
mkdir -p "$WORK/user" && cd "$WORK/user"
PATH="$WORK/venv/bin:$PATH"
unset PYTHONPATH
export SOLOV2_DATASETS="$WORK/user/datasets" OMP_NUM_THREADS=2
python -c "import solov2, sys; assert solov2.__file__.startswith('$WORK/venv'), solov2.__file__"
step solov2 --version
TAIL=2 step solov2 zoo
read -r json images < <(python -c "from solov2.data.datasets import ensure_shapes_split as e; print(*e('$SOLOV2_DATASETS', 'smoke', 6, 0))")
image="$images/000000.png"
step solov2 train --config-file quickstart/shapes_R18.yaml --register-coco smoke "$json" "$images" --output train_out \
    DATASETS.TRAIN "('smoke',)" DATASETS.TEST "()" SOLVER.IMS_PER_BATCH 2 SOLVER.MAX_ITER 3 SOLVER.WARMUP_ITERS 1 \
    INPUT.MIN_SIZE_TRAIN "(64,)" INPUT.MAX_SIZE_TRAIN 96
step solov2 predict --weights train_out/model_final.pth --input "$image" --output pred/ --confidence-threshold 0.02
test -f pred/000000.png
# (3 training iterations score little: a low threshold in the graph, so that something is drawn)
TAIL=4 step solov2 export --weights train_out/model_final.pth --output m.onnx \
    --opts INPUT.MIN_SIZE_TEST 96 INPUT.MAX_SIZE_TEST 128 MODEL.SOLOV2.SCORE_THR 0.02 MODEL.SOLOV2.UPDATE_THR 0.02
step solov2 predict --onnx m.onnx --input "$image" --output pred_onnx/ --confidence-threshold 0.02
test -f pred_onnx/000000.png
step python - "$image" <<'PY'
import sys
from solov2 import Predictor
from solov2.engine import DefaultPredictor
from solov2.predictor import inference_config

image = sys.argv[1]
t = 0.02
result = Predictor("train_out/model_final.pth", score_thresh=t)(image)
cfg, _ = inference_config("train_out/model_final.pth")
cfg.MODEL.SOLOV2.SCORE_THR = cfg.MODEL.SOLOV2.UPDATE_THR = t  # DefaultPredictor with the same threshold
raw = DefaultPredictor(cfg)(image)["instances"]
raw = raw[raw.scores >= t]
assert len(result) == len(raw), (len(result), len(raw))
assert (result.scores - raw.scores.numpy()).__abs__().max(initial=0) < 1e-5 and (result.classes == raw.pred_classes.numpy()).all()
assert (result.masks == raw.pred_masks.numpy()).all()
print(f"Predictor == DefaultPredictor at score >= {t}: {result!r}")
PY

echo "== the clone's tools still work"
cd "$REPO"
export PYTHONPATH="$REPO"
step python tools/train_net.py --config-file configs/quickstart/shapes_R18.yaml \
    --register-coco smoke "$json" "$images" DATASETS.TRAIN "('smoke',)" DATASETS.TEST "()" SOLVER.IMS_PER_BATCH 2 \
    SOLVER.MAX_ITER 2 SOLVER.WARMUP_ITERS 1 INPUT.MIN_SIZE_TRAIN "(64,)" OUTPUT_DIR "$WORK/clone_out"
step python demo/demo.py --weights "$WORK/clone_out/model_final.pth" --input "$image" --output "$WORK/clone_pred/"
test -f "$WORK/clone_pred/000000.png"
echo "package smoke test passed"

#!/usr/bin/env bash
# The README's main command: set up, make a small synthetic dataset with known poses, train
# the CPU-sized `synthetic` preset for a few minutes (PoF3D: no pose labels, no prior), then
# write samples, depth, a mesh and the learned pose distribution next to the true one.
#
#   bash demo.sh                    # ~10 minutes on 2 CPU cores
#   DEMO_KIMG=10 bash demo.sh       # train longer (kimg = thousands of images shown to D)
#   DEMO_OUT=elsewhere bash demo.sh
# Running it again continues the same training run (--resume auto) up to DEMO_KIMG.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
PY=.venv/bin/python
OUT=${DEMO_OUT:-out/demo}
KIMG=${DEMO_KIMG:-2}
FAMILY=${DEMO_FAMILY:-car}
# Two pose modes (front-left and front-right three-quarter views), unknown to the model.
POSE=${DEMO_POSE:-mix:1.0:0.25:0.5,2.14:0.25:0.5}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

DATA=$OUT/data/${FAMILY}32_unlabeled.zip
if [ ! -f "$DATA" ]; then
    echo "== 1/4 synthetic dataset: 2000 ${FAMILY}s at 32 px, poses '$POSE'"
    $PY make_synthetic.py --outdir "$OUT/data" --family "$FAMILY" --num 2000 --resolution 32 --pose "$POSE" --seed 0
fi

echo "== 2/4 training (PoF3D, --cfg synthetic) to $KIMG kimg"
$PY train.py --outdir "$OUT/runs" --cfg synthetic --data "$DATA" --kimg "$KIMG" --resume auto --metrics none

RUN=$(ls -d "$OUT"/runs/*/ | sort | tail -n 1)
SNAP=$(ls "$RUN"network-snapshot-*.pkl | sort | tail -n 1)
echo "== 3/4 samples and an orbit video from $SNAP"
$PY gen_samples_pose.py --network "$SNAP" --seeds 0-7 --dataset synthetic --fov-deg 30 \
    --outdir "$OUT/samples" --shapes --shape-res 64 --shape-format .ply --yaws -45,0,45

$PY gen_videos.py --network "$SNAP" --seeds 0-3 --grid 2x2 --frames 48 --dataset synthetic --fov-deg 30 \
    --output "$OUT/orbit.mp4" --depth

echo "== 4/4 learned pose distribution vs ground truth"
$PY plot_pose_distribution.py --network "$SNAP" --data "$DATA" --dataset synthetic --fov-deg 30 \
    --num 2000 --out "$OUT/pose_distribution.png"

echo
echo "Done. Look at:"
echo "  $RUN          training run (log.txt, stats.jsonl, fakes*.png; tensorboard --logdir $OUT/runs)"
echo "  $OUT/samples  images, depth, poses and meshes per seed; $OUT/orbit.mp4 orbit video"
echo "  $OUT/pose_distribution.png  G's learned (h, v) beside the dataset's true poses"

#!/usr/bin/env bash
# PoF3D on AFHQ-style cats 256 (paper recipe `cat.sh`, SPEC §8.3): 8 GPUs, batch 32, gamma 5,
# lambda_cam 10, lambda_gd 10, labels synthesized with FOV 18.837, the reference's plane axes.
# Resume: run the same command again (--resume auto).
#
#   DATA=/path/cats_processed.zip GPUS=8 bash cats.sh [extra train.py options]
#
# Environment: DATA (dataset zip), GPUS (default 8), OUTDIR (default training-runs), PYTHON
# (default python), DRY_RUN=1 (print the options and parameter counts, then exit).
set -euo pipefail
"${PYTHON:-python}" "$(dirname "$0")/train.py" \
    --outdir "${OUTDIR:-training-runs}" --cfg cats --data "${DATA:-cats_processed.zip}" --gpus "${GPUS:-8}" \
    --batch 32 --gamma 5 --dataset_resolution 256 --create_label_fov 18.837 \
    --neural_rendering_resolution_initial 64 --neural_rendering_resolution_final 64 \
    --superres True --dual_discrimination True \
    --flip_to_dis True --flip_to_disd True --flip_to_disd_weight 1.0 --flip_type flip_both \
    --lr_multiplier 0.01 --lr_multiplier_pose 0.01 --gen_pose_cond True --dis_pose_cond True \
    --dis_cam_weight 10.0 --pose_gd_weight 10.0 --plane_axes legacy --resume auto \
    ${DRY_RUN:+--dry-run} "$@"

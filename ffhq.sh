#!/usr/bin/env bash
# PoF3D on FFHQ 256 (paper recipe, SPEC §8.3): 8 GPUs, batch 32, gamma 1, lambda_cam 2, lambda_gd 1,
# the reference's plane axes. Resume: run the same command again (--resume auto).
#
#   DATA=/path/FFHQ_512.zip GPUS=8 bash ffhq.sh [extra train.py options, e.g. --kimg 5000]
#
# Environment: DATA (dataset zip), GPUS (default 8), OUTDIR (default training-runs), PYTHON
# (default python), DRY_RUN=1 (print the options and parameter counts, then exit).
set -euo pipefail
"${PYTHON:-python}" "$(dirname "$0")/train.py" \
    --outdir "${OUTDIR:-training-runs}" --cfg ffhq --data "${DATA:-FFHQ_512.zip}" --gpus "${GPUS:-8}" \
    --batch 32 --gamma 1 --dataset_resolution 256 \
    --neural_rendering_resolution_initial 64 --neural_rendering_resolution_final 64 \
    --superres True --dual_discrimination True \
    --flip_to_dis True --flip_to_disd True --flip_to_disd_weight 1.0 --flip_type flip_both \
    --lr_multiplier 0.01 --lr_multiplier_pose 0.01 --gen_pose_cond True --dis_pose_cond True \
    --dis_cam_weight 2.0 --pose_gd_weight 1.0 --plane_axes legacy --resume auto \
    ${DRY_RUN:+--dry-run} "$@"

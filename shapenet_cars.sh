#!/usr/bin/env bash
# PoF3D on ShapeNet Cars 128 (paper recipe, SPEC §8.3): 8 GPUs, batch 32, gamma 0.3, lambda_cam 2,
# lambda_gd 2, ShapeNet mirror pair, clamps h in [0, 2 pi] and v in [0, pi], the reference's plane
# axes. Resume: run the same command again (--resume auto).
#
#   DATA=/path/cars_128.zip GPUS=8 bash shapenet_cars.sh [extra train.py options]
#
# Environment: DATA (dataset zip), GPUS (default 8), OUTDIR (default training-runs), PYTHON
# (default python), DRY_RUN=1 (print the options and parameter counts, then exit).
set -euo pipefail
"${PYTHON:-python}" "$(dirname "$0")/train.py" \
    --outdir "${OUTDIR:-training-runs}" --cfg shapenet --data "${DATA:-cars_128.zip}" --gpus "${GPUS:-8}" \
    --batch 32 --gamma 0.3 --dataset_resolution 128 \
    --neural_rendering_resolution_initial 64 --neural_rendering_resolution_final 64 \
    --superres True --dual_discrimination True \
    --flip_to_dis True --flip_to_disd True --flip_to_disd_weight 1.0 --flip_type flip_both_shapenet \
    --lr_multiplier 0.01 --lr_multiplier_pose 0.01 --gen_pose_cond True --dis_pose_cond True \
    --dis_cam_weight 2.0 --pose_gd_weight 2.0 \
    --clamp_h_min 0 --clamp_h_max 6.283185307179586 --clamp_v_min 0 --clamp_v_max 3.1415926 \
    --plane_axes legacy --resume auto \
    ${DRY_RUN:+--dry-run} "$@"

"""PyTorch infrastructure with the StyleGAN2/EG3D public APIs (misc, training_stats,
persistence, custom_ops, ops/). Project logic lives in `training/`, not here."""

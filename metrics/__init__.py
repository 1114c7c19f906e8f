"""Evaluation metrics (SPEC §10): FID/KID (EG3D/StyleGAN3 protocol) and the PoF3D paper metrics
(pose JS divergence, pose error, depth error). Entry points: `metrics.metric_main`."""

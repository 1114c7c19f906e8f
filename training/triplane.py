"""EG3D/PoF3D-named entry point for the tri-plane generator.

EG3D defines `TriPlaneGenerator` in `training/triplane.py`, PoF3D `TriPlaneGeneratorPose` in
`training/triplane_autopose.py`; here one class serves both (the pose source is a
constructor option, docs/model_api.md), and this module re-exports it under both names.
"""

from training.generator import TriPlaneGenerator

TriPlaneGeneratorPose = TriPlaneGenerator

__all__ = ['TriPlaneGenerator', 'TriPlaneGeneratorPose']

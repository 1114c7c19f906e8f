"""Synthetic data with ground truth: procedural symmetric objects, a sphere tracer, pose laws.

`shapes` (SDF families `car`, `head`), `render` (batched sphere tracing, depth + mask),
`poses` (Gaussian / uniform / mixture pose laws and their spec strings). The CLI that writes
datasets is `make_synthetic.py` at the repository root.
"""

from training.synthetic.poses import make_cameras, parse_pose_spec
from training.synthetic.render import RenderOptions, RenderResult, render
from training.synthetic.shapes import FAMILIES, ShapeBatch, ShapeFamily

__all__ = ['FAMILIES', 'RenderOptions', 'RenderResult', 'ShapeBatch', 'ShapeFamily', 'make_cameras',
           'parse_pose_spec', 'render']

"""What the generator returns (SPEC §4.2): a small typed result that still reads like EG3D's dict.

EG3D scripts index the output (`G(z, c)['image']`) and unpack it with `**`; both work, because
`GeneratorOutput` is a read-only Mapping over its fields. New code reads the attributes.
"""

import collections.abc
import dataclasses
from typing import Optional

import torch


@dataclasses.dataclass(frozen=True)
class GeneratorOutput(collections.abc.Mapping):
    image: torch.Tensor                        # [N, 3, H, H] final image in [-1, 1]
    image_raw: torch.Tensor                    # [N, 3, R, R] RGB of the neural rendering
    image_depth: torch.Tensor                  # [N, 1, R, R] expected ray distance
    cam2world: torch.Tensor                    # [N, 4, 4] the camera rendered from
    pose: Optional[torch.Tensor] = None        # [N, 2] (h, v) of the pose source, or None
    clamped_frac: Optional[torch.Tensor] = None  # share of poses the pose source clamped, or None

    def __getitem__(self, key: str):
        if key not in self._fields():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    @classmethod
    def _fields(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes) -> 'GeneratorOutput':
        return dataclasses.replace(self, **changes)

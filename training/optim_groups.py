"""Adam parameter groups of a network: one group, or pi-GAN's mapping split (`unique_lr`).

GOF and ShadeGAN (CelebA, BFM) train pi-GAN's mapping network at lr_G x 0.05 (`unique_lr`,
SEEDS_SPEC §1.7). The official code builds that group from names without DDP's `module.`
prefix, so under DDP it is empty and the mapping trains at the full lr_G (SEEDS_SPEC §2.4 q8,
§3.5 q3, §4.6 q2). Here the split is what was intended:

    mapping_lr_mul != 1, legacy False   two groups: the mapping at lr * mapping_lr_mul, the rest at lr
    mapping_lr_mul == 1 or legacy True  one group at lr (legacy: the official code as it ran)

pi-GAN's mapping is this codebase's film_siren `backbone.mapping` (z -> w) plus
`backbone.synthesis` (the last Linear, w -> FiLM code; training/film_siren.py). The tri-plane
generator's mapping has its own equalized-lr multiplier (`--lr_multiplier`) instead.
"""

from typing import List

import torch

MAPPING_PREFIXES = ('backbone.mapping.', 'backbone.synthesis.')   # pi-GAN's mapping network, film_siren


def param_groups(module: torch.nn.Module, lr: float, mapping_lr_mul: float = 1.0,
                 legacy: bool = False) -> List[dict]:
    """Groups for torch.optim.Adam: [{'params', 'lr', 'name'}], 'main' first (module docstring).
    ValueError when a split is asked for and `module` has no film_siren mapping parameters."""
    named = list(module.named_parameters())
    if mapping_lr_mul == 1 or legacy:
        return [dict(params=[p for _, p in named], lr=lr, name='main')]
    mapping = [p for n, p in named if n.startswith(MAPPING_PREFIXES)]
    if not mapping:
        raise ValueError(f'mapping_lr_mul {mapping_lr_mul:g}: {type(module).__name__} has no film_siren mapping '
                         f'parameters ({" / ".join(MAPPING_PREFIXES)})')
    main = [p for n, p in named if not n.startswith(MAPPING_PREFIXES)]
    return [dict(params=main, lr=lr, name='main'), dict(params=mapping, lr=lr * mapping_lr_mul, name='mapping')]

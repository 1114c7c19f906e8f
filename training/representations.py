"""The generator's 3-D representation strategies (SEEDS_SPEC §6.1 item 1; docs/architecture.md).

One generator (training/generator.py), the representation chosen at construction and
recorded in the pickle (`representation`, `representation_kwargs`). Each representation
provides the same two parts, under the same attribute names, so the generator's mapping,
truncation, pose source and renderer calls do not depend on it:

  G.backbone  .mapping (z, c -> ws [N, num_ws, w_dim], w_avg) and .synthesis (ws -> field code)
  G.decoder   the point network the field reads

  'triplane'    EG3D/PoF3D: StyleGAN2 mapping + synthesis -> planes [N, 3, C, P, P]; OSG
                decoder; optional super-resolution (built in the generator, unchanged).
  'film_siren'  pi-GAN (SEEDS_SPEC §1.3-1.4, §6.2): w = the mapping's last hidden feature
                (w_dim = the mapping width), FiLM code (gamma, beta) [N, n_layers + 1, hidden];
                SIREN point network; no super-resolution (the image is the render).
                representation_kwargs view_condition / light_condition pick ShadeGAN's albedo
                head inputs (SEEDS_SPEC §4.2; training/film_siren.py SirenNetwork).
"""

from typing import Tuple

import torch

from training.film_siren import FilmSirenBackbone, SirenNetwork

REPRESENTATIONS = ('triplane', 'film_siren')
FILM_SIREN_DEFAULTS = dict(hidden=256, n_layers=8)   # pi-GAN CelebA/Cats (SEEDS_SPEC §1.4)
ALBEDO_HEAD_DEFAULTS = dict(view_condition=True, light_condition=False)   # pi-GAN's colour head (§1.4, §4.2)
_FILM_SIREN_MAPPING_KEYS = ('num_layers',)


def check_representation(name: str, representation_kwargs: dict, symmetry: str, rendering_kwargs: dict,
                         mapping_kwargs: dict, synthesis_kwargs: dict) -> None:
    """ValueError naming the options for a representation and generator options that do not
    go together (the train.py checks turn the same cases into usage errors)."""
    if name not in REPRESENTATIONS:
        raise ValueError(f'representation must be one of {REPRESENTATIONS}, got {name!r}')
    if name == 'triplane':
        if representation_kwargs:
            raise ValueError(f"representation='triplane' takes no representation_kwargs, got {representation_kwargs}")
        return
    known = {**FILM_SIREN_DEFAULTS, **ALBEDO_HEAD_DEFAULTS}
    unknown = sorted(set(representation_kwargs) - set(known))
    if unknown:
        raise ValueError(f'film_siren representation_kwargs: unknown {unknown}; known {sorted(known)}')
    if symmetry == 'planes':
        raise ValueError("symmetry='planes' mirrors tri-planes; film_siren has none (use 'none' or 'density')")
    if rendering_kwargs.get('superresolution_module') is not None:
        raise ValueError('film_siren renders the image directly (SEEDS_SPEC §6.2 "Removes: SR"): '
                         'superresolution_module must be None')
    bad_mapping = sorted(set(mapping_kwargs) - set(_FILM_SIREN_MAPPING_KEYS))
    if bad_mapping:
        raise ValueError(f'film_siren mapping_kwargs: only {list(_FILM_SIREN_MAPPING_KEYS)} apply (plain Linear '
                         f'layers with pi-GAN init, no equalized lr), got {bad_mapping}')
    if synthesis_kwargs:
        raise ValueError(f'film_siren has no StyleGAN2 synthesis network: unexpected {sorted(synthesis_kwargs)}')


def build_film_siren(z_dim: int, w_dim: int, mapping_kwargs: dict,
                     representation_kwargs: dict) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone, decoder) of 'film_siren': FilmSirenBackbone(z_dim, w_dim, hidden, n_layers,
    mapping_layers = mapping_kwargs['num_layers'], default 3 as pi-GAN) and SirenNetwork (with the
    albedo head options view_condition, light_condition)."""
    kwargs = {key: representation_kwargs.get(key, value) for key, value in FILM_SIREN_DEFAULTS.items()}
    head = {key: representation_kwargs.get(key, value) for key, value in ALBEDO_HEAD_DEFAULTS.items()}
    backbone = FilmSirenBackbone(z_dim, w_dim, mapping_layers=mapping_kwargs.get('num_layers', 3), **kwargs)
    decoder = SirenNetwork(**kwargs, **head)
    return backbone, decoder

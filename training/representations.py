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
  'feature_volume'  VolumeGAN (SEEDS_SPEC §5.2, §6.5): StyleGAN2 mapping + a 3-D feature volume
                (training/feature_volume.py; `volume` False drops it, the "FV off" row); the point
                MLP of training/point_mlp.py; image head None (the render is the image: C_f = 3
                with a sigmoid, "NR off") or 'NeuralRenderer1x1' (training/neural_renderer.py).
"""

from typing import Tuple

import torch

from training import networks_stylegan2
from training.feature_volume import ADAIN_SCALES, TEMPLATE_INITS, VolumeBackbone
from training.film_siren import FilmSirenBackbone, SirenNetwork
from training.point_mlp import POINT_MLP_CLASSES
from training.rendering.decoder import OSGDecoder
from training.rendering.field import TriplaneField
from training.rendering.siren_field import SirenField
from training.rendering.volume_field import VolumeField
from training.rendering.shading import SHADINGS
from training.superresolution import IMAGE_HEADS, resolve_superresolution

REPRESENTATIONS = ('triplane', 'film_siren', 'feature_volume')
DECODER_OUTPUT_DIM = 32   # the OSG decoder's feature channels; the first 3 are RGB (SPEC §4.5)
# VolumeGAN FFHQ-256 (SEEDS_SPEC §5.2); the flags' defaults reproduce the code (§6.5 "Flags").
FEATURE_VOLUME_DEFAULTS = dict(volume=True, volume_channels=(256, 128, 64, 32), template_init='ones', adain_scale='raw',
                               mlp='modconv', mlp_hidden=256, mlp_layers=4, feature_channels=512, view_dependent=False)
FILM_SIREN_DEFAULTS = dict(hidden=256, n_layers=8)   # pi-GAN CelebA/Cats (SEEDS_SPEC §1.4)
ALBEDO_HEAD_DEFAULTS = dict(view_condition=True, light_condition=False)   # pi-GAN's colour head (§1.4, §4.2)
_FILM_SIREN_MAPPING_KEYS = ('num_layers',)


def check_representation(name: str, representation_kwargs: dict, symmetry: str, rendering_kwargs: dict,
                         mapping_kwargs: dict, synthesis_kwargs: dict) -> None:
    """ValueError naming the options for a representation and generator options that do not
    go together (the train.py checks turn the same cases into usage errors)."""
    if name not in REPRESENTATIONS:
        raise ValueError(f'representation must be one of {REPRESENTATIONS}, got {name!r}')
    head = rendering_kwargs.get('superresolution_module')
    if name == 'triplane':
        if representation_kwargs:
            raise ValueError(f"representation='triplane' takes no representation_kwargs, got {representation_kwargs}")
        if head is not None and str(head).rsplit('.', 1)[-1] in IMAGE_HEADS:
            raise ValueError(f"superresolution_module={head!r} is feature_volume's image head (SEEDS_SPEC §6.5)")
        return
    if symmetry == 'planes':
        raise ValueError(f"symmetry='planes' mirrors tri-planes; {name} has none (use 'none' or 'density')")
    if name == 'feature_volume':
        check_feature_volume(representation_kwargs, head, synthesis_kwargs)
        return
    known = {**FILM_SIREN_DEFAULTS, **ALBEDO_HEAD_DEFAULTS}
    unknown = sorted(set(representation_kwargs) - set(known))
    if unknown:
        raise ValueError(f'film_siren representation_kwargs: unknown {unknown}; known {sorted(known)}')
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


def check_feature_volume(representation_kwargs: dict, head, synthesis_kwargs: dict) -> None:
    """ValueError for feature_volume options that do not go together (SEEDS_SPEC §6.5)."""
    unknown = sorted(set(representation_kwargs) - set(FEATURE_VOLUME_DEFAULTS))
    if unknown:
        raise ValueError(f'feature_volume representation_kwargs: unknown {unknown}; '
                         f'known {sorted(FEATURE_VOLUME_DEFAULTS)}')
    kw = {**FEATURE_VOLUME_DEFAULTS, **representation_kwargs}
    for key, allowed in (('mlp', tuple(POINT_MLP_CLASSES)), ('template_init', TEMPLATE_INITS),
                         ('adain_scale', ADAIN_SCALES)):
        if kw[key] not in allowed:
            raise ValueError(f'feature_volume {key} must be one of {allowed}, got {kw[key]!r}')
    if head is not None and str(head).rsplit('.', 1)[-1] not in IMAGE_HEADS:
        raise ValueError(f'feature_volume takes superresolution_module None or one of {sorted(IMAGE_HEADS)} (its '
                         f'image head, SEEDS_SPEC §6.5), got {head!r}')
    if head is None and kw['feature_channels'] != 3:
        raise ValueError(f'feature_volume without an image head renders the image directly: feature_channels must be '
                         f'3 (sigmoid RGB, SEEDS_SPEC §6.5 "NR off"), got {kw["feature_channels"]}')
    if head is not None and kw['feature_channels'] < 3:
        raise ValueError(f'the image head reads its base RGB from feature channels 0-2: feature_channels must be >= 3, '
                         f'got {kw["feature_channels"]}')
    if synthesis_kwargs:
        raise ValueError(f'feature_volume has no StyleGAN2 synthesis network: unexpected {sorted(synthesis_kwargs)} '
                         f'(the image head takes sr_kwargs)')


def build_feature_volume(z_dim: int, c_dim: int, w_dim: int, img_resolution: int, mapping_kwargs: dict,
                         representation_kwargs: dict, rendering_kwargs: dict,
                         sr_kwargs: dict) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone, decoder) of 'feature_volume': VolumeBackbone (StyleGAN2 mapping with c_dim, the
    volume) and the point MLP; num_ws = mlp_layers + the image head's codes (none without one)."""
    kw = {**FEATURE_VOLUME_DEFAULTS, **representation_kwargs}
    head = resolve_superresolution(rendering_kwargs.get('superresolution_module'))
    head_ws = 0 if head is None else head.num_ws_for(img_resolution, sr_kwargs.get('input_resolution',
                                                                                   img_resolution // 2))
    backbone = VolumeBackbone(z_dim, c_dim, w_dim, kw['mlp_layers'] + head_ws, mapping_kwargs, volume=kw['volume'],
                              channels=tuple(kw['volume_channels']), template_init=kw['template_init'],
                              adain_scale=kw['adain_scale'])
    decoder = POINT_MLP_CLASSES[kw['mlp']](w_dim, volume_channels=kw['volume_channels'][-1] if kw['volume'] else 0,
                                           hidden=kw['mlp_hidden'], layers=kw['mlp_layers'],
                                           feature_channels=kw['feature_channels'],
                                           view_dependent=kw['view_dependent'], feature_sigmoid=head is None)
    return backbone, decoder


def build_representation(name: str, z_dim: int, mapping_c_dim: int, w_dim: int, img_resolution: int,
                         plane_resolution: int, plane_channels: int, mapping_kwargs: dict, representation_kwargs: dict,
                         rendering_kwargs: dict, sr_kwargs: dict,
                         synthesis_kwargs: dict) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone, decoder) of representation `name` (checked by check_representation): the one
    place the generator asks which networks a representation is made of."""
    if name == 'film_siren':
        return build_film_siren(z_dim, w_dim, mapping_kwargs, representation_kwargs)
    if name == 'feature_volume':
        return build_feature_volume(z_dim, mapping_c_dim, w_dim, img_resolution, mapping_kwargs,
                                    representation_kwargs, rendering_kwargs, sr_kwargs)
    backbone = networks_stylegan2.Generator(z_dim, mapping_c_dim, w_dim, img_resolution=plane_resolution,
                                            img_channels=3 * plane_channels, mapping_kwargs=mapping_kwargs,
                                            **synthesis_kwargs)
    decoder = OSGDecoder(plane_channels, {'decoder_lr_mul': rendering_kwargs['decoder_lr_mul'],
                                          'decoder_output_dim': DECODER_OUTPUT_DIM})
    return backbone, decoder


def representation_field(name: str, code, decoder: torch.nn.Module, options, light=None):
    """The Field (training/rendering/field.py) of representation `name` over the backbone's
    output `code`, in the renderer's box (options: RenderingOptions); `light` [N, 4] is bound
    only by a light-conditioned FiLM-SIREN albedo head."""
    if name == 'film_siren':
        return SirenField(*code, decoder, options.box_warp, light=light if decoder.light_condition else None)
    if name == 'feature_volume':
        return VolumeField(*code, decoder, options.box_warp)
    return TriplaneField(code, decoder, options.plane_axes, options.box_warp)


SHADED_REPRESENTATIONS = ('film_siren', 'triplane')   # an RGB colour to read as albedo, a twice-differentiable sigma


def check_shading(shading: str, representation: str, representation_kwargs: dict,
                  superresolution_module=None) -> None:
    """ValueError naming the options for a shading stage the generator cannot build. The tri-plane's
    albedo is its decoder's first 3 channels (the RGB of an SR-free render); it has no view or light
    input, so only the FiLM-SIREN takes a light-conditioned head."""
    if shading not in SHADINGS:
        raise ValueError(f'shading must be one of {SHADINGS}, got {shading!r}')
    if shading != 'none' and representation not in SHADED_REPRESENTATIONS:
        raise ValueError(f"shading={shading!r} needs representation 'film_siren' or 'triplane' (an albedo colour "
                         f"and a twice-differentiable field), got {representation!r}")
    if shading != 'none' and superresolution_module is not None:
        raise ValueError(f"shading={shading!r} shades the rendered image itself: it needs superresolution_module "
                         f"None (got {superresolution_module!r})")
    if representation_kwargs.get('light_condition') and shading == 'none':
        raise ValueError("light_condition=True (a light-conditioned albedo head) needs shading='lambertian'")

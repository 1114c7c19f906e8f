"""The paper-scale recipes of docs/seed_methods.md ("Paper-scale recipes") parse: every
`python train.py ...` command there goes through train.py's option parser, config builder and
config checks (the one-line usage errors) and yields G, D and loss kwargs, without training;
the convention bridges of SEEDS_SPEC §6.0 are in every one (polar prior, corner-aligned labels)."""

import math
import pathlib
import re
import shlex

import numpy as np
import pytest

import train
from training import schedules
from training.cameras import corner_aligned_focal
from training.dataset import fov_label

DOC = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'seed_methods.md'
SECTION = '## Paper-scale recipes'


def recipe_commands(section=SECTION):
    """[(title comment, argv after train.py)] of the section's bash blocks (None: the whole doc)."""
    text = DOC.read_text(encoding='utf-8')
    if section is not None:
        text = text[text.index(section):]
        text = text[:text.index('\n## ', len(section))] if '\n## ' in text[len(section):] else text
    section, commands = text, []
    for block in re.findall(r'```bash\n(.*?)```', section, flags=re.S):
        title = ''
        for line in block.replace('\\\n', ' ').splitlines():
            if line.startswith('#'):
                title = title if title else line
            elif 'train.py' in line:
                argv = shlex.split(line, comments=True)
                commands.append((title, argv[argv.index('train.py') + 1:]))
                title = ''
    return commands


COMMANDS = recipe_commands()


def test_the_section_has_the_six_recipes():
    titles = [t for t, _ in COMMANDS]
    assert len(COMMANDS) == 6, titles
    for method in ('pi-GAN', 'GOF', 'ShadeGAN'):
        for data in ('CelebA', 'Cats'):
            assert sum(method in t and data in t for t in titles) == 1, (method, data, titles)


def parse(argv, tmp_path):
    """argv with --data / --outdir pointed into tmp_path -> the checked TrainConfig."""
    argv = list(argv)
    data = tmp_path / 'data.zip'
    data.write_bytes(b'')
    argv[argv.index('--data') + 1] = str(data)
    argv[argv.index('--outdir') + 1] = str(tmp_path / 'runs')
    ctx = train.main.make_context('train.py', argv)
    c = train.make_config(ctx.params)
    train.check_config(c)
    return c


@pytest.mark.parametrize('title, argv', COMMANDS, ids=[t[2:40] for t, _ in COMMANDS])
def test_recipe_parses_and_checks(title, argv, tmp_path):
    c = parse(argv, tmp_path)
    m, r, d = c.model, c.rendering, c.data
    assert m.representation == 'film_siren' and (m.siren_hidden, m.siren_layers, m.z_dim, m.w_dim) == (256, 8, 256, 256)
    assert m.pose_source == 'prior' and m.prior_parametrization == 'polar'                      # §6.0 pose bridge
    assert d.create_label_fov == 12 and d.create_label_grid == 'corner'                          # §6.0 intrinsics
    K = fov_label(12, 'corner', d.dataset_resolution)[16:]
    assert K[0] == pytest.approx(corner_aligned_focal(12, d.dataset_resolution)) and K[2] == K[5] == 0.5
    assert r.box_warp == 0.24 and r.avg_camera_radius == 1 and not r.white_back
    assert r.neural_rendering_resolution_initial == d.dataset_resolution in (64, 128)
    assert c.optim.betas == (0.0, 0.9) and c.optim.d_reg_interval == 0 and d.mirror    # R1 in D's one step
    assert (c.loss.topk_interval, c.loss.topk_floor) == (2000, 0.6)                     # §2.2, §3.4, §4.5
    stages = {'GOF CelebA': ((160000, 4e-6, 2e-5),), 'GOF Cats': ((30000, 4e-6, 2e-5),),       # the lr drops
              'ShadeGAN CelebA': ((70000, 1e-5, 1e-4), (100000, 2e-6, 2e-5))}
    assert c.optim.lr_stages == next((v for k, v in stages.items() if title.startswith('# ' + k)), ()), title
    res = {'GOF CelebA': ((0, 32), (20000, 64), (160000, 128)), 'GOF Cats': ((0, 32), (5000, 64), (30000, 128)),
           'ShadeGAN CelebA': ((0, 32), (30000, 64), (100000, 128))}                          # the resolutions
    assert r.res_stages == next((v for k, v in res.items() if title.startswith('# ' + k)), ()), title
    assert not r.res_stages or r.res_stages[-1][1] == d.dataset_resolution                   # ends at the data's
    beta = schedules.ema_beta(1e9, c.batch, c.ema_kimg(), c.optim.ema_rampup)                # §1.7: 0.999 per step
    assert c.optim.ema_rampup is None and beta == pytest.approx(0.999, abs=2e-7)
    clip = {'pi-GAN': 10, 'GOF': 1, 'ShadeGAN CelebA': 0.3, 'ShadeGAN Cats': 10}
    assert c.optim.grad_clip == next(v for k, v in clip.items() if title.startswith('# ' + k)), title
    for kwargs in (c.G_kwargs(), c.D_kwargs(), c.loss_kwargs(), c.training_set_kwargs()):
        assert isinstance(kwargs, dict)
    assert c.training_set_kwargs()['create_label_grid'] == 'corner'
    if 'GOF' in title:
        assert r.alpha_rule == 'occupancy' and r.depth_sampler == 'surface_window' and m.mapping_lr_mul == 0.05
    if 'ShadeGAN' in title:
        assert m.shading == 'lambertian' and m.albedo_light
    if 'Cats' in title:
        assert m.prior_distribution == 'uniform' and (m.prior_h_std, m.prior_v_std) == (0.5, 0.4)
        assert (r.ray_start, r.ray_end) == (0.8, 1.2)
    else:
        assert m.prior_distribution == 'gaussian' and (m.prior_h_std, m.prior_v_std) == (0.3, 0.155)
        assert (r.ray_start, r.ray_end) == (0.88, 1.12) and m.prior_v_mean == pytest.approx(math.pi / 2)


def test_pigan_celeba_recipe_focal_at_128():
    label = fov_label(12, 'corner', 128)
    assert label[16] == pytest.approx(127 / (256 * math.tan(math.radians(6))))   # 4.7203
    assert np.array_equal(label[:16], np.zeros(16))
    with pytest.raises(ValueError, match='resolution'):
        fov_label(12, 'corner')


def test_corner_labels_through_the_dataset(tmp_path):
    import PIL.Image

    from training.dataset import ImageFolderDataset
    folder = tmp_path / 'imgs'
    folder.mkdir()
    for i in range(2):
        PIL.Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(folder / f'{i}.png')
    ds = ImageFolderDataset(str(folder), resolution=16, use_labels=True, create_label_fov=12,
                            create_label_grid='corner')
    f = 15 / (32 * math.tan(math.radians(6)))     # (R - 1) / (2R tan(fov/2)) at R = 16
    assert ds.get_label(1)[16] == pytest.approx(corner_aligned_focal(12, 16)) == pytest.approx(f)
    with pytest.raises(ValueError, match='create_label_grid'):
        ImageFolderDataset(str(folder), resolution=16, create_label_fov=12, create_label_grid='centre')


def test_recipe_networks_build(tmp_path):
    """The pi-GAN CelebA recipe's G and D construct (the kwargs are not just dicts)."""
    import dnnlib
    c = parse(COMMANDS[0][1], tmp_path)
    G = dnnlib.util.construct_class_by_name(**c.G_kwargs())
    D = dnnlib.util.construct_class_by_name(**c.D_kwargs())
    assert G.img_resolution == D.img_resolution == 128


@pytest.mark.parametrize('argv', [a for _, a in recipe_commands(None)], ids=lambda a: ' '.join(a[:6]))
def test_every_train_command_of_the_doc_passes_the_checks(argv, tmp_path):
    """The CPU-scale commands too (e.g. PoF3D's learned pose with --cfg gof, whose preset carries
    the prior's law: no usage error for what the user did not set)."""
    parse(argv, tmp_path)

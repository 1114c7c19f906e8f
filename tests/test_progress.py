"""The user sees that training is alive (issue 16 item 5): a progress line between ticks, one
summary line instead of the options dump, --help that names the presets' values."""

import re

import torch
from click.testing import CliRunner

import hardening_helpers  # tests/hardening_helpers.py
import train
from training import reporting

data_and_run = hardening_helpers.data_and_run   # the module fixture: dataset + one-tick run


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_progress_line_every_interval_with_rate_and_eta():
    clock = FakeClock()
    progress = reporting.Progress(total_kimg=2, start_nimg=0, interval=10, clock=clock)
    clock.now += 9.9
    assert progress.line(99) is None                       # not yet 10 s
    clock.now += 0.1
    assert progress.line(100) == 'progress: kimg 0.100 of 2  10.0 img/s  ETA 3m 10s'   # 1900 images at 10/s
    clock.now += 5
    progress.mark()                                        # a tick line was printed
    clock.now += 9
    assert progress.line(240) is None
    clock.now += 1
    assert progress.line(250).startswith('progress: kimg 0.250 of 2  10.0 img/s')
    clock.now += 10
    assert progress.line(350, {'G': 0.6931, 'D': None}).endswith('ETA 2m 45s  loss G 0.693')


def test_local_mean_reads_this_process_without_syncing():
    from torch_utils import training_stats
    # Names of their own: the statistics are process-global, and other tests collect 'Test/.*'.
    assert training_stats.local_mean('ProgressTest/never') is None
    training_stats.report('ProgressTest/local', torch.tensor([1.0, 2.0]))
    training_stats.report('ProgressTest/local', 6.0)
    assert training_stats.local_mean('ProgressTest/local') == 3.0
    assert training_stats.local_mean('ProgressTest/local') == 3.0   # reading does not consume
    training_stats.Collector(regex='ProgressTest/.*').update()       # leave nothing pending


def test_run_prints_a_summary_line_not_the_options_dump(data_and_run):
    _, runs = data_and_run
    (log,) = runs.glob('*/log.txt')
    text = log.read_text()
    assert '"G_kwargs"' not in text and 'training_options.json; --verbose prints them' in text
    assert 'synthetic: ' in text and '0.008 kimg, batch 8' in text


def test_help_shows_the_presets_values():
    res = CliRunner().invoke(train.main, ['--help'])
    text = ' '.join(res.output.split())
    kimg = (r'--kimg FLOAT Training length in kimg \[default: 25000; --cfg gof 200, pigan 200, shadegan 200, '
            r'synthetic 200, volumegan 200\]')
    assert re.search(kimg, text), text
    gamma = '--cfg cats 5.0, ffhq 1.0, gof 1.0, pigan 1.0, shadegan 1.0, shapenet 0.3, synthetic 1.0, volumegan 1.0'
    assert gamma in text

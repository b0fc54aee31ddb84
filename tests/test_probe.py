"""experiments.probe: can an encoder's features tell the pool's rare kinds from common ones?"""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from dal_jax.experiment import loop
from dal_jax.study import probe
from experiments.configs import synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]


def _probe(*flags, timeout=600):
    """``python -m experiments.probe FLAGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "experiments.probe", *flags],
        capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False,
    )  # fmt: skip


def test_rare_images_are_those_holding_a_kind_below_its_fair_share():
    kinds = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0], [0, 1, 0]])
    # shares: 3/7, 3/7, 1/7 -> only the third kind is rare (below 1/3)
    np.testing.assert_array_equal(probe.rare_images(kinds), [0, 0, 0, 1, 0, 0])


def test_separability_is_high_where_a_feature_holds_the_answer_and_chance_where_none_does():
    rng = np.random.default_rng(0)
    n = 400
    target = rng.random(n) < 0.25
    noise = rng.normal(size=(2, n, 6)).astype(np.float32)
    told = noise.copy()
    told[0, :, 0] += 3.0 * target  # seed 0's features hold the answer in one number
    acc = probe.separability(told, target, jax.random.key(0))
    assert acc[0] > 0.9
    assert 0.3 < acc[1] < 0.7  # seed 1's are noise: chance, on images never trained on


@pytest.mark.slow
def test_the_cli_probes_every_seed_of_a_run_and_writes_its_json(tmp_path):
    c = synthetic.get_config("smoke")
    c.synthetic.kind_mix = "longtail"
    loop.run(c, tmp_path, progress=False)
    p = _probe(f"--workdir={tmp_path}", "--inputs=pooled")
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / f"probe_round{c.rounds - 1}.json").read_text())
    assert list(res["accuracy"]) == ["pooled"] and len(res["accuracy"]["pooled"]) == c.seeds
    assert all(0.0 <= a <= 1.0 for a in res["accuracy"]["pooled"])
    assert 0 < res["rare"] < res["images"]
    assert "held-out balanced accuracy" in p.stdout
    bad = _probe(f"--workdir={tmp_path}", "--round=99")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no checkpoint for round 99" in bad.stderr and "available rounds" in bad.stderr


def test_the_cli_refuses_an_unknown_input_in_one_line(tmp_path):
    p = _probe(f"--workdir={tmp_path}", "--inputs=deep", timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "deep" in p.stderr and "pooled, flat, multi" in p.stderr

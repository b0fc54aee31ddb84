"""Leave-one-object-out (dal_jax.experiment.holdout) on the shared real Jacquard samples, and its baseline."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dal_jax.data import grasp, pools
from dal_jax.experiment import build, holdout
from experiments.configs import jacquard_subset, synthetic
from tests.test_inference import make_checkpoint


@pytest.fixture(scope="module")
def jacquard_dir(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("jac_loo")
    b = pools.make_builder("jacquard_subset", d)
    manual = tfds.download.DownloadConfig(manual_dir=shared_data / "jacquard")
    b.download_and_prepare(download_config=manual)
    return d


def _config(data_dir, **overrides):
    c = jacquard_subset.get_config()
    c.data_dir = str(data_dir)
    c.image_size, c.seeds, c.steps_per_round, c.chunk_steps = 48, 1, 3, 3
    c.steps_per_label = 0.0
    for k, v in overrides.items():
        c[k] = v
    return c


def test_frame_centre_grasp_is_scored_by_the_rectangle_metric():
    size = 48
    centre_rect = grasp.grasp_to_rect(
        np.array([(size - 1) / 2] * 2), np.array(0.0), np.array(12.0), np.array(6.0)
    )
    far_rect = grasp.offset_rects(centre_rect, np.array([15.0, 15.0]))
    rects = np.stack([centre_rect, far_rect])[:, None]  # [2 images, 1 grasp, 4, 2]
    images = pools.Pool(
        np.zeros((2, size, size, 1), np.float32), None, rects, np.ones((2, 1), bool),
        np.array(["a", "b"]), None, None,
    )  # fmt: skip
    train_rects = np.stack([centre_rect] * 3)  # median opening 12, jaw 6
    np.testing.assert_array_equal(holdout.frame_centre_success(images, train_rects), [True, False])


@pytest.mark.slow
def test_every_object_is_held_out_once_and_reported_beside_the_baselines(jacquard_dir, tmp_path):
    other = make_checkpoint(tmp_path / "other", size=48)
    res = holdout.run(_config(jacquard_dir), tmp_path / "loo", compare_to=other, progress=False)
    assert json.loads((tmp_path / "loo" / "leave_one_out.json").read_text()) == res
    objects = [r["object"] for r in res["objects"]]
    assert len(objects) == len(set(objects)) == 4  # the four shared objects, each held out once
    for r in res["objects"]:
        assert r["images"] == 5 and r["trained_on"] == 15  # 20 views: 5 per object
        assert len(r["accuracy"]) == 1 and 0 <= r["accuracy"][0] <= 1
        assert 0 <= r["frame_centre"] <= 1 and 0 <= r["compare_to"] <= 1
    mean = res["mean"]
    assert mean["frame_centre"] == pytest.approx(
        np.mean([r["frame_centre"] for r in res["objects"]])
    )
    assert "| mean |" in holdout.table(res)


def test_a_dataset_without_objects_is_refused():
    c = build.resolve(synthetic.get_config("smoke"))
    pool = dataclasses.replace(build.load_data(c).pool.subset(np.arange(4)), object_ids=None)
    with pytest.raises(ValueError, match="records no object per image"):
        holdout._folds(c, pool)

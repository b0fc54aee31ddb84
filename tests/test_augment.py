"""On-device augmentation: depth and grasp maps move together, and the ground truth with them."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax.data import grasp, target_maps
from dal_jax.evaluation import metric, postprocess
from dal_jax.training import augment

S = 96
RECTS = grasp.grasp_to_rect(
    np.array([[30.0, 40.0], [60.0, 66.0]]),
    np.array([0.3, -1.1]),
    np.array([30.0, 24.0]),
    np.array([12.0, 10.0]),
)


def transform(transpose=False, flip_rows=False, flip_cols=False, zoom=1.0, top=0.0, left=0.0):
    return augment.Transform(
        jnp.asarray(transpose),
        jnp.asarray(flip_rows),
        jnp.asarray(flip_cols),
        jnp.float32(zoom),
        jnp.float32(top),
        jnp.float32(left),
    )


def box_scene():
    """A centred depth crop with one raised box (0.7 m table, 5 cm box) and its targets."""
    depth = np.full((S, S), 0.7, np.float32)
    depth[20:41, 30:51] -= 0.05
    x = (depth - depth.mean())[..., None]
    return x, target_maps.make_targets(RECTS, None, (S, S))


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=3)))
def test_symmetries_move_the_maps_exactly_like_the_rectangles(flags):
    """Each of the 8 symmetries: the transformed target maps equal the maps painted from the
    transformed rectangles, pixel for pixel (angles and widths included)."""
    t = transform(*flags)
    _, y = box_scene()
    _, ya = augment.apply(t, jnp.zeros((S, S, 1)), jnp.asarray(y))
    ya = np.asarray(ya)
    expect = target_maps.make_targets(augment.transform_rects(RECTS, t, S), None, (S, S))
    np.testing.assert_array_equal(ya[..., 0], expect[..., 0])
    np.testing.assert_allclose(ya, expect, atol=1e-6)


@pytest.mark.slow
def test_zoomed_maps_decode_to_the_transformed_ground_truth():
    """Random transforms with zoom: the grasp read from the augmented maps (as if they were a
    network's output) is the transformed ground-truth grasp: the rectangle metric accepts it,
    and its centre, angle and opening agree with the nearest transformed rectangle."""
    _, y = box_scene()
    keys = jax.random.split(jax.random.key(0), 12)
    ts = [augment.sample(k, S, zoom_min=0.6) for k in keys]
    ys = np.stack(
        [np.asarray(augment.apply(t, jnp.zeros((S, S, 1)), jnp.asarray(y))[1]) for t in ts]
    )
    gts = np.stack([augment.transform_rects(RECTS, t, S) for t in ts])
    _, ok = metric.accuracy(ys[None], gts, np.ones(gts.shape[:2], bool))
    assert np.asarray(ok).all()
    g = postprocess.predict_grasps(ys)
    for i in range(len(ts)):
        centre, angle, opening, _ = grasp.rect_params(gts[i])
        k = np.argmin(np.linalg.norm(centre - np.asarray(g.centre[i, 0]), axis=1))
        assert np.linalg.norm(centre[k] - np.asarray(g.centre[i, 0])) < 2.0
        diff = abs(grasp.wrap_angle(float(g.angle[i, 0]) - angle[k]))
        assert diff < np.deg2rad(5)
        assert float(g.opening[i, 0]) == pytest.approx(opening[k], rel=0.1)
    assert any(float(t.zoom) < 0.8 for t in ts)  # the zoom was exercised


def test_depth_moves_with_the_rectangles():
    """The raised box's centre in the augmented depth is where the transformed box corners
    put it (to a pixel), and the augmented depth is re-centred on its window."""
    x, y = box_scene()
    corners = np.array([[[20, 30], [20, 50], [40, 50], [40, 30]]], np.float64)
    checked = 0
    for k in jax.random.split(jax.random.key(1), 12):
        t = augment.sample(k, S, zoom_min=0.7)
        xa, _ = augment.apply(t, jnp.asarray(x), jnp.asarray(y))
        xa = np.asarray(xa)[..., 0]
        assert abs(xa.mean()) < 1e-6
        moved = augment.transform_rects(corners, t, S)[0]
        if moved.min() < 0 or moved.max() > S - 1:
            continue  # the zoom window cut the box: its visible part has another centre
        low = xa < xa.min() + 0.025  # the box top
        np.testing.assert_allclose(np.argwhere(low).mean(axis=0), moved.mean(axis=0), atol=1.0)
        checked += 1
    assert checked >= 4


def test_batches_are_keyed_and_padding_stays_zero():
    x, y = box_scene()
    xb = jnp.asarray(np.stack([x, x, np.zeros_like(x)]))
    yb = jnp.asarray(np.stack([y, y, np.zeros_like(y)]))
    fn = jax.jit(lambda k, a, b: augment.augment_batch(k, a, b, 0.7))
    a1, b1 = fn(jax.random.key(3), xb, yb)
    a2, b2 = fn(jax.random.key(3), xb, yb)
    a3, _ = fn(jax.random.key(4), xb, yb)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(a1, a3)
    assert not np.array_equal(a1[0], a1[1])  # every example draws its own transform
    assert not np.asarray(a1[2]).any() and not np.asarray(b1[2]).any()

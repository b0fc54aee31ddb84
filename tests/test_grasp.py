"""Rectangle <-> grasp conversions and the Cornell / Jacquard text formats."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax.data import grasp


def _random_grasps(n, seed=0):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(20, 280, size=(n, 2))
    angle = rng.uniform(-math.pi / 2, math.pi / 2, size=n)
    opening = rng.uniform(5, 120, size=n)
    jaw = rng.uniform(3, 40, size=n)
    return centre, angle, opening, jaw


def test_grasp_rect_round_trip():
    centre, angle, opening, jaw = _random_grasps(200)
    rects = grasp.grasp_to_rect(centre, angle, opening, jaw)
    assert rects.shape == (200, 4, 2)
    c2, a2, o2, j2 = grasp.rect_params(rects)
    np.testing.assert_allclose(c2, centre, atol=1e-9)
    np.testing.assert_allclose(o2, opening, atol=1e-9)
    np.testing.assert_allclose(j2, jaw, atol=1e-9)
    np.testing.assert_allclose(np.cos(2 * a2), np.cos(2 * angle), atol=1e-9)
    np.testing.assert_allclose(np.sin(2 * a2), np.sin(2 * angle), atol=1e-9)
    assert (a2 >= -math.pi / 2).all() and (a2 < math.pi / 2).all()


def test_angle_convention_counter_clockwise_up_positive():
    # p0 -> p1 goes right and UP (row decreases): +45 degrees.
    rect = np.array([[10.0, 10.0], [0.0, 20.0], [5.0, 25.0], [15.0, 15.0]])
    _, angle, opening, jaw = grasp.rect_params(rect)
    assert angle == pytest.approx(math.pi / 4)
    assert opening == pytest.approx(math.sqrt(200))
    assert jaw == pytest.approx(math.sqrt(50))
    # Vertical opening wraps to -pi/2 (the range is [-pi/2, pi/2)).
    _, a_vert, _, _ = grasp.rect_params(np.array([[10.0, 0], [0.0, 0], [0, 5], [10, 5]]))
    assert a_vert == pytest.approx(-math.pi / 2)
    assert grasp.wrap_angle(math.pi * 0.75) == pytest.approx(-math.pi / 4)


def test_conversions_inside_jit():
    centre, angle, opening, jaw = _random_grasps(8, seed=1)

    @jax.jit
    def f(c, a, o, j):
        return grasp.rect_params(grasp.grasp_to_rect(c, a, o, j))

    c2, a2, o2, j2 = f(*(jnp.asarray(x, jnp.float32) for x in (centre, angle, opening, jaw)))
    assert isinstance(o2, jax.Array)
    np.testing.assert_allclose(np.cos(2 * np.asarray(a2)), np.cos(2 * angle), atol=1e-4)
    np.testing.assert_allclose(np.asarray(j2), jaw, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(o2), opening, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(c2), centre, rtol=1e-4)


def test_rotate_scale_offset():
    rect = grasp.grasp_to_rect(np.array([50.0, 60.0]), 0.1, 30.0, 10.0)
    rot = grasp.rotate_rects(rect, 0.3, np.array([50.0, 60.0]))
    c, a, o, j = grasp.rect_params(rot)
    np.testing.assert_allclose(c, [50, 60], atol=1e-9)
    assert a == pytest.approx(0.4)
    assert (o, j) == (pytest.approx(30.0), pytest.approx(10.0))
    # Per-rectangle angles and centres (the noisy-Cornell use).
    rects = np.stack([rect, grasp.offset_rects(rect, (10, -5))])
    rot2 = grasp.rotate_rects(rects, np.array([0.2, -0.2]), rects.mean(axis=1))
    _, a2, _, _ = grasp.rect_params(rot2)
    np.testing.assert_allclose(a2, [0.3, -0.1], atol=1e-9)
    np.testing.assert_allclose(grasp.rect_params(rects[1])[0], [60, 55], atol=1e-9)
    c3, _, o3, _ = grasp.rect_params(grasp.scale_rects(rect, 300 / 1024))
    np.testing.assert_allclose(c3, np.array([50, 60]) * 300 / 1024)
    assert o3 == pytest.approx(30 * 300 / 1024)


def test_parse_cornell_crlf_last_line_and_nan():
    text = (
        "253.0 319.7\r\n309.2 324.1\r\n307.0 350.5\r\n251.3 346.9\r\n"
        "NaN 1\r\n2 3\r\n4 5\r\n6 7\r\n"
        "10 20\r\n30 40\r\n50 60\r\n70 8"  # last line: no newline, one-digit last value
    )
    rects, skipped = grasp.parse_cornell(text)
    assert skipped == 1
    assert rects.shape == (2, 4, 2)
    np.testing.assert_array_equal(rects[0, 0], [320, 253])  # (row, col), rounded
    np.testing.assert_array_equal(rects[1, 3], [8, 70])  # the final '8' is not cut
    raw, _ = grasp.parse_cornell(text, round_to_int=False)
    assert raw[0, 0, 0] == pytest.approx(319.7)


def test_parse_cornell_partial_and_garbage():
    # A file cut short: the first rectangle is whole, the dangling partial one is counted.
    rects, skipped = grasp.parse_cornell("10 20\n50 20\n50 40\n10 40\n9 10\n")
    assert len(rects) == 1 and skipped == 1
    np.testing.assert_array_equal(rects[0], [[20, 10], [20, 50], [40, 50], [40, 10]])
    rects, skipped = grasp.parse_cornell("1 2\nfoo bar\n5 6\n7 8\n")
    assert len(rects) == 0 and skipped == 1


# Three hand-drawn-like Cornell rectangles (x y lines): axis-aligned, 45 degrees, real-looking.
_A = ["253 319.7", "309.2 324.1", "307.0 350.5", "251.3 346.9"]
_B = ["100 100", "140 100", "140 120", "100 120"]
_C = ["200 50", "230 80", "216 94", "186 64"]


def _rects(*blocks):
    return grasp.parse_cornell("\n".join(ln for b in blocks for ln in b), round_to_int=False)[0]


@pytest.mark.parametrize("drop", [0, 2, 5, 6, 9])
def test_parse_cornell_missing_middle_line_skips_only_the_broken_rectangle(drop):
    """A line missing in the middle: before the fix the groups after the gap mixed the corners
    of two rectangles and were kept. Now the broken rectangle is skipped (and counted) and every
    other rectangle comes back whole."""
    lines = _A + _B + _C
    broken = drop // 4
    text = "\n".join(lines[:drop] + lines[drop + 1 :])
    rects, skipped, notes = grasp.parse_cornell_report(text, round_to_int=False)
    whole = [b for i, b in enumerate((_A, _B, _C)) if i != broken]
    np.testing.assert_allclose(rects, _rects(*whole))
    assert skipped == 1
    assert "not a multiple of 4" in notes[0] and "1 rectangle(s) skipped" in notes[0]
    assert all(grasp.plausible_rect(r) for r in rects)


def test_parse_cornell_ambiguous_grouping_keeps_nothing_doubtful():
    # Near-duplicate rectangles with the first line lost: [A1 A2 A3 A0'] is a rotated copy
    # of A (opening and jaw swapped), as plausible as the true grouping, so nothing is kept.
    text = "\n".join((_B + _B + _B)[1:])
    rects, skipped, notes = grasp.parse_cornell_report(text)
    assert len(rects) == 0 and skipped == 3 and "ambiguous" in notes[0]
    # Well-aligned files are grouped four by four as before (no shape check).
    rects, skipped = grasp.parse_cornell("\n".join(_A + ["1 1", "2 2", "3 3", "4 4"]))
    assert len(rects) == 2 and skipped == 0


def test_plausible_rect():
    assert grasp.plausible_rect(grasp.grasp_to_rect(np.array([50.0, 60]), 0.3, 40.0, 8.0))
    rect = np.array([[0.0, 0], [0, 40], [20, 40], [20, 0]])
    assert grasp.plausible_rect(np.round(rect + 0.4))
    assert not grasp.plausible_rect(rect[[0, 2, 1, 3]])  # self-crossing order
    assert not grasp.plausible_rect([[0, 0], [0, 40], [20, 40], [0, 0]])  # a corner repeated
    assert not grasp.plausible_rect([[0, 0], [1, 1], [2, 2], [3, 3]])  # collinear
    assert not grasp.plausible_rect([[0, 0], [0, 40], [20, 60], [20, 20]])  # parallelogram


def test_cornell_format_round_trip():
    rects = np.round(grasp.grasp_to_rect(*_random_grasps(5, seed=2)))
    back, skipped = grasp.parse_cornell(grasp.format_cornell(rects))
    assert skipped == 0
    np.testing.assert_array_equal(back, rects)


def test_jacquard_round_trip_and_convention():
    text = "470.14815;253.89551;68.2615;25.5;25.6211\r\n100;200;-30;40;10"
    rects, skipped = grasp.parse_jacquard(text, scale=0.5)
    assert skipped == 0 and rects.shape == (2, 4, 2)
    c, a, o, j = grasp.rect_params(rects)
    np.testing.assert_allclose(c[0], [253.89551 / 2, 470.14815 / 2])
    assert a[0] == pytest.approx(-math.radians(68.2615))  # image convention flipped
    assert a[1] == pytest.approx(math.radians(30))
    np.testing.assert_allclose(o, [12.75, 20])
    np.testing.assert_allclose(j, [25.6211 / 2, 5])
    back, _ = grasp.parse_jacquard(grasp.format_jacquard(rects))
    np.testing.assert_allclose(grasp.rect_params(back)[2], o, atol=1e-4)
    np.testing.assert_allclose(grasp.rect_params(back)[0], c, atol=1e-4)
    _, skipped = grasp.parse_jacquard("1;2;3\nnan;1;2;3;4\n")
    assert skipped == 2

"""Procedural cluttered top-down scenes with antipodal grasp rectangles, written in the real
Cornell file format (``pcdXXXX.txt`` PCD v.7 ASCII point cloud, ``pcdXXXXr.png``,
``pcdXXXXcpos.txt``) so that the Cornell reader is always exercised.

A scene is a slightly tilted table seen from 0.62-0.80 m (object sizes in pixels vary with the
distance), with 3-6 non-overlapping objects of six kinds (`KINDS`): boxes, cylinders, hexagonal
prisms, thin bars, big boxes and flat plates. Grasps are derived from the geometry and a
parallel gripper: the opening axis is normal to a pair of parallel faces (box sides, hexagon
faces, any diameter of a cylinder), the opening is the object's thickness there plus clearance
and must fit the gripper (`MAX_OPENING`), the object must stand at least `MIN_HEIGHT` above the
table for the fingers to hold it (plates never do), and a grasp is kept only if both jaw pads
land on free table inside the frame. So a network has to learn which objects are graspable,
how, and where clutter leaves room for the fingers. Sensor effects: 0.5 mm depth noise, missing
points at random and along object edges (written as NaN points, then inpainted by the reader).
Sizes scale with the frame, designed at a 96 px crop.

`KIND_MIX` names the object-kind frequencies of the built-in variants: ``uniform`` (every kind
alike) and ``longtail`` (a few easy kinds dominate, the rest are rare).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
from PIL import Image

from dal_jax.data import grasp

KINDS = ("box", "cylinder", "hexprism", "bar", "bigbox", "plate", "ring", "lshape")
KIND_MIX = {
    "uniform": (1, 1, 1, 1, 1, 1, 1, 1),
    "longtail": (10, 10, 1, 1, 1, 1, 1, 1),
}
RANGE = (0.62, 0.80)  # metres from the camera to the table centre
DESIGN_RANGE = 0.70  # the range at which the sizes below (px at a 96 px crop) hold
MAX_OPENING = 30.0  # px at a 96 px crop: the widest the gripper opens
MIN_HEIGHT = 0.015  # m: lower objects cannot be held between the fingers
CLEARANCE = 3.0  # px on each side of the object

PCD_HEADER = (
    "# .PCD v.7 - Point Cloud Data file format\n"
    "FIELDS x y z rgb index\n"
    "SIZE 4 4 4 4 4\n"
    "TYPE F F F F U\n"
    "COUNT 1 1 1 1 1\n"
    "WIDTH {w}\n"
    "HEIGHT {h}\n"
    "POINTS {n}\n"
    "DATA ascii\n"
)


def frame_shape(crop: int) -> tuple[int, int]:
    """(rows, cols) of the synthetic frame for a crop size: wider than tall like Cornell's, and
    larger than the crop so the crop placement/clamping code runs."""
    return crop + crop // 6, crop + crop // 3


def _object(rng, s, mix):
    """A random object of a kind drawn with weights ``mix`` (one per `KINDS`), at pixel scale
    s. dims: box-like: half-sizes (a along the object's axis, b across); round: (radius,);
    ring: (outer radius, inner radius); lshape: (arm length along u, along v, thickness)."""
    kind = KINDS[rng.choice(len(KINDS), p=np.asarray(mix, float) / np.sum(mix))]
    theta = rng.uniform(-math.pi, math.pi)
    if kind in ("box", "bar", "bigbox"):
        lo_a, hi_a, lo_b, hi_b = {
            "box": (6, 14, 3, 7),
            "bar": (12, 20, 2, 3.5),
            "bigbox": (11, 16, 9, 13),
        }[kind]
        a = rng.uniform(lo_a, hi_a) * s
        b = rng.uniform(lo_b, min(hi_b, a / s - 1)) * s
        dims, radius = (a, b), math.hypot(a, b)
    elif kind in ("cylinder", "plate"):
        r = rng.uniform(*((4, 9) if kind == "cylinder" else (8, 13))) * s
        dims, radius = (r,), r
    elif kind == "ring":
        outer = rng.uniform(11, 14) * s
        dims, radius = (outer, outer - rng.uniform(3.5, 5) * s), outer
    elif kind == "lshape":
        la, lb, t = rng.uniform(16, 24) * s, rng.uniform(16, 24) * s, rng.uniform(5, 7) * s
        dims, radius = (la, lb, t), math.hypot(la, lb) / 2
    else:
        big_r = rng.uniform(5, 9) * s  # circumradius
        dims, radius = (big_r,), big_r
    height = rng.uniform(*((0.004, 0.010) if kind == "plate" else (0.02, 0.07)))
    if kind == "bar":
        height = rng.uniform(0.015, 0.04)
    return {"kind": kind, "theta": theta, "dims": dims, "radius": radius, "height": height}


def _axes(theta):
    """(row, col) unit vectors of an object's u axis (along it) and v axis (across it)."""
    cos, sin = math.cos(theta), math.sin(theta)
    return np.array([-sin, cos]), np.array([cos, sin])


def _mask(obj, centre, rr, cc):
    """Boolean footprint [H, W] of an object centred at ``centre`` (row, col)."""
    dr, dc = rr - centre[0], cc - centre[1]
    th, kind = obj["theta"], obj["kind"]
    # Object axes in (row, col): u along angle theta (counter-clockwise, up positive), v across.
    u = -dr * math.sin(th) + dc * math.cos(th)
    v = dr * math.cos(th) + dc * math.sin(th)
    if kind in ("box", "bar", "bigbox"):
        a, b = obj["dims"]
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if kind in ("cylinder", "plate"):
        return dr**2 + dc**2 <= obj["dims"][0] ** 2
    if kind == "ring":
        outer, inner = obj["dims"]
        d2 = dr**2 + dc**2
        return (d2 <= outer**2) & (d2 > inner**2)
    if kind == "lshape":
        la, lb, t = obj["dims"]
        u0, v0 = u + la / 2, v + lb / 2  # from the corner, so the L's bounding box is centred
        inside = (u0 >= 0) & (v0 >= 0) & (u0 <= la) & (v0 <= lb)
        return inside & ((u0 <= t) | (v0 <= t))
    inr = obj["dims"][0] * math.cos(math.pi / 6)
    out = np.ones_like(u, dtype=bool)
    for k in range(3):  # face normals at theta + pi/6 + k pi/3
        phi = th + math.pi / 6 + k * math.pi / 3
        out &= np.abs(-dr * math.sin(phi) + dc * math.cos(phi)) <= inr
    return out


def _grown(obj):
    """The object one pixel larger all round (its rim is where depth goes missing)."""
    dims = obj["dims"]
    if obj["kind"] == "ring":
        dims = (dims[0] + 1, dims[1] - 1)
    elif obj["kind"] == "lshape":
        dims = (dims[0] + 2, dims[1] + 2, dims[2] + 2)
    else:
        dims = tuple(d + 1 for d in dims)
    return {**obj, "dims": dims}


def _candidates(obj, centre, s):
    """Candidate grasps (centre, angle, opening, jaw) of one object that the gripper can take
    (the jaw pads' clearance is checked later, against the clutter). Each kind has its own
    rule: boxes across (and short ones end to end), cylinders along any diameter, hexagonal
    prisms across a face pair, rings only by a pinch across the wall (never across the hole),
    L-shapes across an arm away from the corner, plates not at all (too low)."""
    if obj["height"] < MIN_HEIGHT:
        return []
    th, clear, widest = obj["theta"], CLEARANCE * s, MAX_OPENING * s
    centre = np.asarray(centre, float)
    along, across = _axes(th)
    out = []
    kind = obj["kind"]
    if kind in ("box", "bar", "bigbox"):
        a, b = obj["dims"]
        opening = 2 * b + 2 * clear
        jaw = min(2 * a, max(4 * s, opening / 2))
        if opening <= widest:  # across the object, side by side along its whole length
            n = max(1, round(2 * a / jaw))
            for t in np.linspace(-(a - jaw / 2), a - jaw / 2, n):
                out.append((centre + t * along, th + math.pi / 2, opening, jaw))
        if 2 * a + 2 * clear <= widest:  # short objects also end to end
            out.append((centre, th, 2 * a + 2 * clear, min(2 * b, max(4 * s, a + clear))))
    elif kind == "cylinder":
        r = obj["dims"][0]
        for k in range(4):
            out.append((centre, th + k * math.pi / 4, 2 * r + 2 * clear, r))
    elif kind == "ring":
        outer, inner = obj["dims"]
        wall, mid = outer - inner, (outer + inner) / 2
        for k in range(6):  # one finger in the hole, one outside
            phi = th + k * math.pi / 3
            point = centre + mid * np.array([-math.sin(phi), math.cos(phi)])
            out.append((point, phi, wall + 2 * clear, max(3 * s, 1.5 * wall)))
    elif kind == "lshape":
        la, lb, t = obj["dims"]
        corner = centre - la / 2 * along - lb / 2 * across
        opening, jaw = t + 2 * clear, max(4 * s, (t + 2 * clear) / 2)
        for arm, length, axis, side, angle in (
            ("u", la, along, across, th + math.pi / 2),
            ("v", lb, across, along, th),
        ):
            start = t + clear + jaw / 2  # away from the corner, where the other arm is
            for pos in np.linspace(start, length - jaw / 2, max(1, round((length - start) / jaw))):
                out.append((corner + pos * axis + t / 2 * side, angle, opening, jaw))
    else:
        big_r = obj["dims"][0]
        inr = big_r * math.cos(math.pi / 6)
        for k in range(3):
            phi = th + math.pi / 6 + k * math.pi / 3
            out.append((centre, phi, 2 * inr + 2 * clear, big_r))
    return [g for g in out if g[2] <= widest]


def _pads_free(rect, occupied):
    """True when both jaw pads (edges p0-p3 and p1-p2 of rect [4, 2]) lie on free table
    inside the frame (occupied: [H, W] bool, dilated object footprints)."""
    h, w = occupied.shape
    t = np.linspace(0, 1, 7)[:, None]
    pts = np.concatenate([rect[0] + t * (rect[3] - rect[0]), rect[1] + t * (rect[2] - rect[1])])
    r, c = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
    if (r < 0).any() or (c < 0).any() or (r >= h).any() or (c >= w).any():
        return False
    return not occupied[r, c].any()


def make_scene(rng: np.random.Generator, crop: int, mix=KIND_MIX["uniform"], objects=(3, 6)):
    """One scene of ``objects`` = (min, max) objects, their kinds drawn with weights ``mix``.
    Returns (range [H, W] float32 metres with NaN = missing, rgb [H, W, 3] uint8, rects
    [G, 4, 2] (row, col), kinds [K] of the objects placed), or None when no feasible grasp was
    found."""
    h, w = frame_shape(crop)
    distance = rng.uniform(*RANGE)
    s = crop / 96.0 * DESIGN_RANGE / distance  # nearer tables look bigger
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    tilt = rng.uniform(-2e-4, 2e-4, size=2) * (96.0 / crop)  # metres per pixel
    depth = distance + tilt[0] * (rr - h / 2) + tilt[1] * (cc - w / 2)
    rgb = np.empty((h, w, 3), np.float64)
    rgb[:] = rng.uniform(150, 220, size=3)
    occupied = np.zeros((h, w), bool)
    edges = np.zeros((h, w), bool)
    placed = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        obj = _object(rng, s, mix)
        for _try in range(20):
            # Objects sit in the middle of the frame so the crop holds them.
            centre = (rng.uniform(0.22, 0.78) * h, rng.uniform(0.22, 0.78) * w)
            gap = 3 * s  # clutter: often too little room for a jaw pad between neighbours
            if all(math.dist(centre, c) > obj["radius"] + o["radius"] + gap for o, c in placed):
                break
        else:
            continue
        m = _mask(obj, centre, rr, cc)
        depth[m] -= obj["height"]
        rgb[m] = rng.uniform(20, 255, size=3)
        occupied |= m
        edges |= m ^ _mask(_grown(obj), centre, rr, cc)
        placed.append((obj, centre))
    # Dilate by one pixel so a pad touching an object's rim counts as a collision.
    occ = occupied.copy()
    occ[1:] |= occupied[:-1]
    occ[:-1] |= occupied[1:]
    occ[:, 1:] |= occupied[:, :-1]
    occ[:, :-1] |= occupied[:, 1:]
    rects = []
    for obj, centre in placed:
        for c, a, o, j in _candidates(obj, centre, s):
            rect = grasp.grasp_to_rect(np.asarray(c), np.float64(a), np.float64(o), np.float64(j))
            if _pads_free(rect, occ):
                rects.append(rect)
    if not rects:
        return None
    depth += rng.normal(0, 5e-4, size=depth.shape)
    missing = (rng.random(depth.shape) < 0.005) | (edges & (rng.random(depth.shape) < 0.3))
    depth[missing] = np.nan
    rgb = np.clip(rgb + rng.normal(0, 4, size=rgb.shape), 0, 255).astype(np.uint8)
    kinds = [obj["kind"] for obj, _ in placed]
    return depth.astype(np.float32), rgb, np.stack(rects), kinds


def pcd_text(range_m: np.ndarray, rgb: np.ndarray) -> str:
    """Range image [H, W] metres (NaN = missing) -> organised PCD v.7 ASCII text with
    ``x y z rgb index`` points in millimetres whose norm is the range (pinhole rays)."""
    h, w = range_m.shape
    f = 1.2 * w  # focal length in pixels; only the ray directions matter
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    ray = np.stack([(cc - w / 2) / f, (rr - h / 2) / f, np.ones_like(rr)], axis=-1)
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
    xyz = (ray * range_m[..., None] * 1000.0).reshape(-1, 3)
    packed = (
        (rgb[..., 0].astype(np.int64) << 16)
        | (rgb[..., 1].astype(np.int64) << 8)
        | rgb[..., 2].astype(np.int64)
    )
    n = h * w
    cols = np.empty((n, 5), dtype=object)
    cols[:, :3] = np.round(xyz, 2)
    cols[:, 3] = packed.reshape(-1)
    cols[:, 4] = np.arange(n)
    # One %-format over the whole array is ~10x faster than formatting point by point.
    body = ("%s %s %s %d %d\n" * n) % tuple(cols.ravel())
    return PCD_HEADER.format(w=w, h=h, n=n) + body


def scene_id(i: int) -> str:
    """The Cornell-style id of scene i: pcd0100.. in folder 01, pcd0200.. in 02, ..."""
    return f"pcd{(i // 100 + 1) * 100 + i % 100:04d}"


def write_scenes(
    folder: pathlib.Path,
    num: int,
    crop: int,
    seed: int,
    mix=KIND_MIX["uniform"],
    mix_of=None,
    objects=(3, 6),
) -> dict[str, list[str]]:
    """Writes ``num`` scenes in the Cornell layout (folders 01, 02, ... of 100 scenes named
    pcd0100.., pcd0200..), object kinds drawn with weights ``mix`` (or ``mix_of(scene id)``
    per scene). Deterministic in ``seed``. Returns scene id -> the kinds of its objects."""
    ids = {}
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        sid = scene_id(i)
        scene = None
        while scene is None:  # resample (same stream) until a grasp is feasible
            scene = make_scene(rng, crop, mix if mix_of is None else mix_of(sid), objects)
        depth, rgb, rects, kinds = scene
        sub = folder / f"{i // 100 + 1:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{sid}.txt").write_text(pcd_text(depth, rgb))
        Image.fromarray(rgb).save(sub / f"{sid}r.png")
        text = grasp.format_cornell(rects)
        # Vary the line endings like real-world copies do: CRLF, and no final newline.
        if i % 7 == 3:
            text = text.replace("\n", "\r\n")
        if i % 5 == 2:
            text = text.rstrip("\r\n")
        (sub / f"{sid}cpos.txt").write_bytes(text.encode())
        ids[sid] = kinds
    return ids

"""Procedural cluttered top-down scenes with antipodal grasp rectangles, written in the real
Cornell file format (``pcdXXXX.txt`` PCD v.7 ASCII point cloud, ``pcdXXXXr.png``,
``pcdXXXXcpos.txt``) so that the Cornell reader is always exercised.

A scene is a slightly tilted table plane seen from ~0.7 m, with 2-4 non-overlapping objects
(boxes, cylinders, hexagonal prisms) of 2-7 cm height. Grasps are derived from the geometry:
the opening axis is normal to a pair of parallel faces (box sides, hexagon faces, any diameter
of a cylinder), the opening is the object's thickness there plus clearance, and a grasp is kept
only if both jaw pads land on free table inside the frame. Sensor effects: 0.5 mm depth noise,
missing points at random and along object edges (written as NaN points, then inpainted by the
reader). Sizes scale with the frame, designed at a 96 px crop.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
from PIL import Image

from dal_jax import grasp

TABLE_RANGE = 0.70  # metres from the camera to the table centre

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


def _object(rng, s):
    kind = ("box", "cylinder", "hexprism")[rng.integers(3)]
    theta = rng.uniform(-math.pi, math.pi)
    if kind == "box":
        a = rng.uniform(6, 14) * s  # half-length
        b = rng.uniform(3, min(7, a / s - 1)) * s  # half-width
        radius = math.hypot(a, b)
        dims = (a, b)
    elif kind == "cylinder":
        r = rng.uniform(4, 9) * s
        radius, dims = r, (r,)
    else:
        big_r = rng.uniform(5, 9) * s  # circumradius
        radius, dims = big_r, (big_r,)
    return {"kind": kind, "theta": theta, "dims": dims, "radius": radius}


def _mask(obj, centre, rr, cc):
    """Boolean footprint [H, W] of an object centred at ``centre`` (row, col)."""
    dr, dc = rr - centre[0], cc - centre[1]
    th = obj["theta"]
    # Object axes in (row, col): u along angle theta (counter-clockwise, up positive), v across.
    u = -dr * math.sin(th) + dc * math.cos(th)
    v = dr * math.cos(th) + dc * math.sin(th)
    if obj["kind"] == "box":
        a, b = obj["dims"]
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if obj["kind"] == "cylinder":
        return dr**2 + dc**2 <= obj["dims"][0] ** 2
    inr = obj["dims"][0] * math.cos(math.pi / 6)
    out = np.ones_like(u, dtype=bool)
    for k in range(3):  # face normals at theta + pi/6 + k pi/3
        phi = th + math.pi / 6 + k * math.pi / 3
        out &= np.abs(-dr * math.sin(phi) + dc * math.cos(phi)) <= inr
    return out


def _candidates(obj, centre, s):
    """Candidate grasps (centre, angle, opening, jaw) lists for one object."""
    th, clear = obj["theta"], 3.0 * s
    out = []
    if obj["kind"] == "box":
        a, b = obj["dims"]
        jaw = min(2 * a, max(3 * s, b))
        along = np.array([-math.sin(th), math.cos(th)])
        for t in np.linspace(-(a - jaw / 2), a - jaw / 2, 3):
            out.append((np.asarray(centre) + t * along, th + math.pi / 2, 2 * b + 2 * clear, jaw))
        if 2 * a + 2 * clear <= 36 * s:  # short boxes can also be grasped end to end
            out.append((np.asarray(centre), th, 2 * a + 2 * clear, min(2 * b, jaw)))
    elif obj["kind"] == "cylinder":
        r = obj["dims"][0]
        for k in range(4):
            out.append((np.asarray(centre), th + k * math.pi / 4, 2 * r + 2 * clear, r))
    else:
        big_r = obj["dims"][0]
        inr = big_r * math.cos(math.pi / 6)
        for k in range(3):
            phi = th + math.pi / 6 + k * math.pi / 3
            out.append((np.asarray(centre), phi, 2 * inr + 2 * clear, 0.6 * big_r))
    return out


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


def make_scene(rng: np.random.Generator, crop: int):
    """One scene. Returns (range [H, W] float32 metres with NaN = missing, rgb [H, W, 3]
    uint8, rects [G, 4, 2] (row, col)), or None when no feasible grasp was found."""
    h, w = frame_shape(crop)
    s = crop / 96.0
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    tilt = rng.uniform(-2e-4, 2e-4, size=2) * (96.0 / crop)  # metres per pixel
    depth = TABLE_RANGE + tilt[0] * (rr - h / 2) + tilt[1] * (cc - w / 2)
    rgb = np.empty((h, w, 3), np.float64)
    rgb[:] = rng.uniform(150, 220, size=3)
    occupied = np.zeros((h, w), bool)
    edges = np.zeros((h, w), bool)
    placed = []
    for _ in range(int(rng.integers(2, 5))):
        obj = _object(rng, s)
        for _try in range(20):
            # Objects sit in the middle of the frame so the crop holds them.
            centre = (rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w)
            gap = 7 * s  # room for a jaw pad between neighbours
            if all(math.dist(centre, c) > obj["radius"] + o["radius"] + gap for o, c in placed):
                break
        else:
            continue
        m = _mask(obj, centre, rr, cc)
        height = rng.uniform(0.02, 0.07)
        depth[m] -= height
        rgb[m] = rng.uniform(20, 255, size=3)
        occupied |= m
        edges |= m ^ _mask({**obj, "dims": tuple(d + 1 for d in obj["dims"])}, centre, rr, cc)
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
    return depth.astype(np.float32), rgb, np.stack(rects)


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


def write_scenes(folder: pathlib.Path, num: int, crop: int, seed: int) -> list[str]:
    """Writes ``num`` scenes in the Cornell layout (folders 01, 02, ... of 100 scenes named
    pcd0100.., pcd0200..). Deterministic in ``seed``. Returns the scene ids."""
    ids = []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        scene = None
        while scene is None:  # resample (same stream) until a grasp is feasible
            scene = make_scene(rng, crop)
        depth, rgb, rects = scene
        sub = folder / f"{i // 100 + 1:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        sid = f"pcd{(i // 100 + 1) * 100 + i % 100:04d}"
        (sub / f"{sid}.txt").write_text(pcd_text(depth, rgb))
        Image.fromarray(rgb).save(sub / f"{sid}r.png")
        text = grasp.format_cornell(rects)
        # Vary the line endings like real-world copies do: CRLF, and no final newline.
        if i % 7 == 3:
            text = text.replace("\n", "\r\n")
        if i % 5 == 2:
            text = text.rstrip("\r\n")
        (sub / f"{sid}cpos.txt").write_bytes(text.encode())
        ids.append(sid)
    return ids

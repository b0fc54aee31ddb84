"""Grasp datasets as in-memory pools: inputs, GG-CNN target maps and ground-truth rectangles.

The prepared TFDS datasets (see the top-level ``datasets`` package, built with
``python -m datasets.prepare``) are read through ``as_data_source`` (array_record, random
access; no TensorFlow). The target maps are drawn by `dal_jax.data.target_maps`.

Array conventions (N examples, S x S images, G = most rectangles of any example):

* ``inputs`` [N, S, S, C] float32. Channel 0 is depth minus the crop's mean, clipped to [-1, 1]
  (GG-CNN's reference normalisation). With ``channels='rgbd'`` channels 1..3 are RGB / 255 minus the crop's mean
  over all RGB values (the GG-CNN reference normalisation), so C = 4.
* ``targets`` [N, S, S, 4] **float16** (pos, cos 2a, sin 2a, clip(opening, 0, 150) / 150): half
  precision halves the largest array so Cornell at 300 x 300 fits the 2 GB budget; every
  value is in [-1, 1] where float16 is accurate to ~5e-4. Cast to float32 before training.
* ``gt_rects`` [N, G, 4, 2] float32 (row, col), padded with zeros; ``gt_mask`` [N, G] bool.
* ``depth`` [N, S, S] float32 metres (inpainted crop); ``rgb`` [N, S, S, 3] uint8.
* ``kinds`` [N, K] int32: objects of each kind in each image, for datasets that record kinds
  (the synthetic scenes, K = len(``info["kind_names"]``)); None for real datasets.

Host memory for Cornell (885 images) at 300 x 300, depth input (the paper's setting): inputs
319 MB + targets 637 MB + depth 319 MB + rgb 239 MB + rectangles < 10 MB = about 1.52 GB.
RGB-D inputs take 1274 MB instead of 319 MB (2.47 GB in all); ``display=False`` drops the
display copies (``depth``, ``rgb`` = None), giving 0.96 GB (depth) or 1.92 GB (RGB-D).
Arrays are pre-allocated and filled example by example, so the peak is the same.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from dal_jax.data import target_maps
from dal_jax.data.preprocess import normalise_depth, normalise_rgb


@dataclasses.dataclass
class Pool:
    """A set of examples held in memory (shapes in the module docstring)."""

    inputs: np.ndarray
    targets: np.ndarray
    gt_rects: np.ndarray
    gt_mask: np.ndarray
    ids: np.ndarray
    rgb: np.ndarray | None
    depth: np.ndarray | None
    object_ids: np.ndarray | None = None
    kinds: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices) -> Pool:
        """A new Pool of the examples at ``indices`` (int array or bool mask), copied."""
        idx = np.asarray(indices)
        if idx.dtype != bool:
            idx = idx.astype(np.int64)

        def take(a):
            return None if a is None else a[idx]

        return Pool(
            inputs=take(self.inputs),
            targets=take(self.targets),
            gt_rects=take(self.gt_rects),
            gt_mask=take(self.gt_mask),
            ids=take(self.ids),
            rgb=take(self.rgb),
            depth=take(self.depth),
            object_ids=take(self.object_ids),
            kinds=take(self.kinds),
        )


@dataclasses.dataclass
class Dataset:
    """A training pool, a test set, an optional recorded initial labelled set (indices into
    ``pool``; Jacquard) and a free-form ``info`` dict (name, config, counts, skipped files)."""

    name: str
    pool: Pool
    test: Pool
    initial: np.ndarray | None
    info: dict


# --------------------------------------------------------------------------- builders


def grasp_datasets():
    """The repository's ``datasets`` package (its TFDS builders), with a clear error when
    Hugging Face's package of the same name is found instead."""
    import datasets

    if not hasattr(datasets, "make_builder"):
        raise ImportError(
            f"`import datasets` found {getattr(datasets, '__file__', datasets)}, not "
            "this repository's datasets/ folder (Hugging Face's package has the same name). "
            "Run from the repository root with `python -m ...`."
        )
    return datasets


def check_name(name: str) -> None:
    """ValueError naming the valid datasets for an unknown builder name."""
    names = grasp_datasets().NAMES
    if name not in names:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(names)}")


def make_builder(name: str, data_dir=None, config=None, **config_kwargs):
    """The TFDS builder of a dataset (`datasets.make_builder`)."""
    return grasp_datasets().make_builder(name, data_dir, config, **config_kwargs)


def is_prepared(name: str, data_dir=None, config=None, **config_kwargs) -> bool:
    """Whether the dataset is already built in ``data_dir`` (default: TFDS' default)."""
    return make_builder(name, data_dir, config, **config_kwargs).is_prepared()


def _as_str(v) -> str:
    if isinstance(v, np.ndarray):
        v = v.item()
    return v.decode() if isinstance(v, bytes) else str(v)


def load_pool(
    source, size: int | None = None, channels: str = "depth", display: bool = True
) -> tuple[Pool, np.ndarray]:
    """Reads a TFDS data source (one split) into a Pool.

    Args:
      source: ``builder.as_data_source()[split]``.
      size: optional smaller square size; depth and RGB are area-resized, rectangles scaled,
        and targets painted at that size (not resized).
      channels: 'depth' (C = 1) or 'rgbd' (C = 4).
      display: keep the ``depth``/``rgb`` display copies (else they are None).
    Returns:
      (pool, initial [N] bool: the recorded initial labelled flags).
    """
    if channels not in ("depth", "rgbd"):
        raise ValueError(f"channels must be 'depth' or 'rgbd', got {channels!r}")
    n = len(source)
    first = source[0] if n else None
    src_size = first["depth"].shape[0] if n else (size or 0)
    s = size or src_size
    c = 1 if channels == "depth" else 4
    inputs = np.empty((n, s, s, c), np.float32)
    targets = np.empty((n, s, s, 4), np.float16)
    depth = np.empty((n, s, s), np.float32) if display else None
    rgb = np.empty((n, s, s, 3), np.uint8) if display else None
    rects, ids, objs = [], [], []
    initial = np.zeros(n, bool)
    factor = s / src_size if n else 1.0
    for i in range(n):
        ex = first if i == 0 else source[i]
        d, im, r = ex["depth"], ex["rgb"], np.asarray(ex["rects"], np.float32)
        if s != src_size:
            d = cv2.resize(d, (s, s), interpolation=cv2.INTER_AREA)
            im = cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA)
            r = r * factor
        if display:
            depth[i], rgb[i] = d, im
        inputs[i, ..., 0] = normalise_depth(d)
        if c == 4:
            inputs[i, ..., 1:] = normalise_rgb(im)
        targets[i] = target_maps.make_targets(r, None, (s, s))
        rects.append(r)
        ids.append(_as_str(ex["id"]))
        objs.append(_as_str(ex["object_id"]))
        initial[i] = bool(ex["initial"])
    g = max((len(r) for r in rects), default=0)
    gt_rects = np.zeros((n, g, 4, 2), np.float32)
    gt_mask = np.zeros((n, g), bool)
    for i, r in enumerate(rects):
        gt_rects[i, : len(r)] = r
        gt_mask[i, : len(r)] = True
    pool = Pool(
        inputs=inputs,
        targets=targets,
        gt_rects=gt_rects,
        gt_mask=gt_mask,
        ids=np.asarray(ids, dtype=str),
        rgb=rgb,
        depth=depth,
        object_ids=np.asarray(objs, dtype=str),
    )
    return pool, initial


def load_dataset(
    name: str,
    data_dir=None,
    size: int | None = None,
    channels: str = "depth",
    config: str | None = None,
    display: bool = True,
    **builder_kwargs,
) -> Dataset:
    """Loads a prepared dataset (train split = the active-learning pool, test split).

    ``synthetic_grasps`` is built on first use (a few seconds); the others must be prepared
    with ``python -m datasets.prepare --dataset=NAME`` first. ``size`` (a multiple of 12, the
    GG-CNN stride) resizes everything to a smaller square for fast runs. ``config`` and
    ``builder_kwargs`` select the builder config (see `make_builder`). ``channels``: 'depth' or
    'rgbd'; ``display=False`` drops the depth/rgb display copies to save memory.
    """
    if size is not None and (size <= 0 or size % 12):
        raise ValueError(f"size must be a positive multiple of 12 (GG-CNN's stride), got {size}")
    builder = make_builder(name, data_dir, config, **builder_kwargs)
    if not builder.is_prepared():
        if name != "synthetic_grasps":
            raise FileNotFoundError(
                f"{name} ({builder.builder_config.name}) is not prepared in "
                f"{builder.data_dir_root}. Build it with: python -m datasets.prepare "
                f"--dataset={name} --data_dir={builder.data_dir_root} [--manual_dir=DIR]"
            )
        builder.download_and_prepare()
    src = builder.as_data_source()
    # A split can be absent (e.g. test_fraction=0): it loads as an empty Pool.
    pool, initial = load_pool(src.get("train", []), size, channels, display)
    test, _ = load_pool(src.get("test", []), size, channels, display)
    meta = dict(builder.info.metadata or {})
    pool.kinds = scene_kinds(pool.ids, meta, name)
    test.kinds = scene_kinds(test.ids, meta, name)
    info = {
        "name": name,
        "config": builder.builder_config.name,
        "data_dir": str(builder.data_dir),
        "size": pool.inputs.shape[1] if len(pool) else size,
        "channels": channels,
        "num_pool": len(pool),
        "num_test": len(test),
        "skipped": meta.get("skipped", []),
        "skipped_rects": meta.get("skipped_rects", 0),
    }
    if pool.kinds is not None:
        info["kind_names"] = list(meta["kind_names"])
    return Dataset(
        name=name,
        pool=pool,
        test=test,
        initial=np.flatnonzero(initial) if initial.any() else None,
        info=info,
    )


def scene_kinds(ids, metadata: dict, dataset: str = "dataset") -> np.ndarray | None:
    """Objects of each kind in each image, [N, K] int32, from a builder's metadata.

    ids [N] scene ids; ``metadata["scene_kinds"]`` maps a scene id to its objects per kind (a
    list in the order of ``metadata["kind_names"]``, K names). None when the dataset records
    no kinds (real datasets). ValueError when an image's scene is missing from the record.
    """
    record, names = metadata.get("scene_kinds"), metadata.get("kind_names")
    if record is None or names is None:
        return None
    ids = [str(i) for i in np.asarray(ids).tolist()]
    missing = [i for i in ids if i not in record]
    if missing:
        raise ValueError(
            f"{dataset}: the metadata's scene_kinds has no entry for {len(missing)} image(s) "
            f"(first: {missing[0]}); rebuild the dataset"
        )
    out = np.zeros((len(ids), len(names)), np.int32)
    for row, sid in enumerate(ids):
        out[row] = record[sid]
    return out


# --------------------------------------------------------------------------- per-image facts


def grasp_counts(pool: Pool) -> np.ndarray:
    """Labelled grasp rectangles of each image, [N] int64 (``gt_mask`` [N, G] summed)."""
    return np.asarray(pool.gt_mask, bool).sum(axis=1)


def _surface_basis(h: int, w: int, degree: int) -> np.ndarray:
    """Monomials x^i y^j (i + j <= degree) of centred pixel coordinates scaled to about
    [-0.5, 0.5] (well-conditioned normal equations), as [H * W, terms] float64."""
    scale = max(h, w)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = (y - (h - 1) / 2) / scale, (x - (w - 1) / 2) / scale
    terms = [x**i * y**j for i in range(degree + 1) for j in range(degree + 1 - i)]
    return np.stack(terms, axis=-1).reshape(h * w, -1)


def _fit_surface(basis, d, use) -> np.ndarray:
    """Least-squares coefficients [terms] of the surface through the pixels ``use`` [P] bool
    of d [P] (basis [P, terms])."""
    a = basis[use]
    return np.linalg.lstsq(a.T @ a, a.T @ d[use], rcond=None)[0]


def object_pixels(
    depth,
    above: float = 0.010,
    band: float = 0.005,
    degree: int = 2,
    refits: int = 2,
    max_envelope_iters: int = 20,
) -> np.ndarray:
    """Pixels of each image that stand more than ``above`` metres above the table, [N] int64.

    depth [N, H, W] metres (e.g. ``Pool.depth``); NaN, inf and values <= 0 are missing and
    never counted. The table is a smooth surface fitted by least squares: a polynomial of
    ``degree`` in (row, col), 2 by default because Cornell's depth is the range along each
    pixel's ray, in which a flat table seen at an angle is curved (a plane misses it by tens
    of mm across a 300 px crop); a planar table is fitted exactly either way, and
    ``degree=1`` fits a plane. The fit:

    1. over all valid pixels;
    2. lower envelope: refit on the pixels not more than ``band`` nearer than the surface
       until it stops moving (at most ``max_envelope_iters`` fits). Objects only ever stand
       nearer than the table, so a first fit pulled towards large ones sinks back to the
       table instead of losing it, as a symmetric band around a biased fit can;
    3. ``refits`` fits on the pixels within ``band`` of the surface (the table alone).

    A pixel counts when it is more than ``above`` nearer to the camera than the surface.
    Limits: objects lower than ``above`` (Cornell's glasses, pens, toothbrushes, the
    synthetic plates) count nothing or next to nothing; depth edges smoothed by inpainting
    add part of a rim; where a crop reaches past the table's edge, structures standing above
    the table's extrapolated surface (Cornell's wall behind the table, in the crops of its
    tall boxes) count too, and a crop mostly off the table can fit the wrong surface.
    """
    depth = np.asarray(depth)
    if depth.ndim != 3:
        raise ValueError(f"depth must be [N, H, W]; got shape {depth.shape}")
    n, h, w = depth.shape
    basis = _surface_basis(h, w, degree)
    # The fits use a grid of about 20k pixels (every 2nd row and column of a 300 px crop): as
    # accurate for a smooth surface and ~4x faster; the count uses every pixel.
    step = max(1, int(math.sqrt(h * w / 20000)))
    grid = (np.arange(0, h, step)[:, None] * w + np.arange(0, w, step)[None, :]).reshape(-1)
    sub = basis[grid]
    terms = basis.shape[1]
    out = np.zeros(n, np.int64)
    for i in range(n):
        full = depth[i].reshape(-1).astype(np.float64)
        valid_full = np.isfinite(full) & (full > 0)
        d, valid = full[grid], valid_full[grid]
        if valid.sum() < terms:
            continue  # too few readings to fit a table: nothing is known to stand above it
        d = np.where(valid, d, 0.0)
        coef = _fit_surface(sub, d, valid)
        for _ in range(max_envelope_iters):
            use = valid & (d - sub @ coef > -band)
            if use.sum() < terms:
                break
            new = _fit_surface(sub, d, use)
            moved = np.abs(sub @ (new - coef)).max()
            coef = new
            if moved < 1e-4:  # 0.1 mm: the envelope has settled
                break
        for _ in range(refits):
            use = valid & (np.abs(d - sub @ coef) < band)
            if use.sum() < terms:
                break
            coef = _fit_surface(sub, d, use)
        out[i] = np.count_nonzero(valid_full & (basis @ coef - full > above))
    return out

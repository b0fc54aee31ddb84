"""GG-CNN's maps for many images with one compiled program per model.

`maps` runs the network in fixed-size batches (the last one padded), so any number of images
reuses one program; programs are shared by every trainer with an equal model.
"""

from __future__ import annotations

import jax
import numpy as np

from dal_jax.model import models

_PROGRAMS: dict = {}


def _program(model: models.GGCNN):
    """params, x [B, H, W, C] -> (maps [B, H, W, 4], conv1 max [B, 32]), compiled once."""
    fn = _PROGRAMS.get(model)
    if fn is None:

        def one(params, x):
            out, feats = model.apply({"params": params}, x)
            return out, feats.f1.max(axis=(1, 2))

        fn = _PROGRAMS[model] = jax.jit(one)
    return fn


def maps(model: models.GGCNN, params, x, batch: int = 16, with_conv1: bool = False):
    """GG-CNN maps for one run's params: x [N, H, W, C] -> [N, H, W, 4] (host numpy).

    With ``with_conv1`` also the largest conv1 activation (after ReLU) of every channel in
    every image, [N, 32]: a channel that stays 0 on every image is a dead filter.
    """
    fn = _program(model)
    n = len(x)
    out = np.zeros((n, *x.shape[1:3], 4), np.float32)
    conv1 = np.zeros((n, models.ENCODER[0][1]), np.float32)
    for i in range(0, n, batch):
        xb = np.asarray(x[i : i + batch], np.float32)
        m = len(xb)
        if m < batch:
            xb = np.concatenate([xb, np.zeros((batch - m, *xb.shape[1:]), np.float32)])
        out_b, f1 = fn(params, xb)
        out[i : i + m], conv1[i : i + m] = np.asarray(out_b)[:m], np.asarray(f1)[:m]
    return (out, conv1) if with_conv1 else out

"""The detector's one compiled program: GG-CNN, the quality blur, peaks, angle / width at peaks.

Post-processing versus the reference's (`dal_jax.evaluation.postprocess`, SciPy-exact): the same peak
rules (``peak_mask``: 41x41 maximum filter, 20 px border, > 0.2; greedy spacing), but the
Gaussian blurs are the project's float32 blur (`postprocess.gaussian_blur` accumulating in
float32, the one the metric's fast top-1 uses) instead of SciPy's float64, and the angle / width
maps are blurred only in the window around each peak (`postprocess.blur_at`: the blurred value
at a pixel depends only on that window). The blurred maps then differ from the reference by
~1e-7 relative, which can only change the chosen peak between two pixels whose quality agrees
to ~7 digits; the float64 path would cost the robot's latency budget for no practical gain.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.evaluation import postprocess
from dal_jax.model import models


@functools.partial(jax.jit, static_argnames=("top_k", "with_maps", "input_scale"))
def run_network(params, x, top_k: int, with_maps: bool = False, input_scale: float = 1.0):
    """Network + post-processing of one normalised input x [N, N, C].

    Returns (rows, cols [k] int32, angle, opening, quality [k] float32, valid [k] bool) and,
    with ``with_maps``, the raw network maps [N, N, 4]. ``input_scale``: the model's (from
    the checkpoint's metadata). Shapes are fixed (N x N, top_k): one compile per top_k.
    """
    model = models.GGCNN(fast=True, input_scale=input_scale)
    preds = model.apply({"params": params}, x[None])[0][0].astype(jnp.float32)
    # The project's float32 blur (the metric's fast path): float64 would cost latency, not peaks.
    q = postprocess.gaussian_blur(preds[..., 0], postprocess.Q_SIGMA, np.float32)
    d = postprocess.peak_distance(min(q.shape))
    rows, cols, valid = postprocess.top_peaks(q, postprocess.peak_mask(q, d), top_k, d)
    angle, opening, quality = postprocess.values_at(preds, rows, cols, np.float32)
    out = (rows, cols, angle, opening, quality, valid)
    return out + (preds,) if with_maps else out

"""Convolution layers with PyTorch semantics, in forms that are fast on XLA:CPU.

PyTorch's ``ConvTranspose2d`` scatters every input pixel ``i`` through the kernel to the output
positions ``o = s*i + k - p``; the output has ``(in - 1)*s - 2p + k + output_padding`` pixels a
side. XLA lowers ``lax.conv_transpose`` to a convolution over a zero-dilated input, which for
stride 3 does 9x the necessary work on CPU. ``conv_transpose_phases`` computes the same function
as ``s*s`` phase convolutions fused into one ordinary convolution followed by depth-to-space
(the sub-pixel form), with the kernel kept in the PyTorch meaning so checkpoints convert 1:1.

Kernels here are stored ``[kh, kw, in, out]``: ``kernel[a, b, i, o]`` is PyTorch's
``weight[i, o, a, b]`` for a transposed conv (and ``weight[o, i, a, b]`` for a plain conv).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
LAX_CONV_MIN_CIN = 64


def transposed_size(size: int, kernel: int, stride: int, padding: int, output_padding: int):
    """Output size of a PyTorch transposed convolution along one axis."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def conv_transpose_reference(x, kernel, stride: int, padding: int, output_padding: int):
    """PyTorch ``ConvTranspose2d`` (no bias) via ``lax.conv_transpose``: the slow, obvious form.

    Args:
      x: [B, H, W, Cin]; kernel: [k, k, Cin, Cout].
    Returns:
      [B, H', W', Cout] with H' = transposed_size(H, ...).
    """
    k = kernel.shape[0]
    # lax.conv_transpose with transpose_kernel=True is the gradient of a conv, i.e. PyTorch's
    # scatter form once the kernel's in/out axes are swapped. Padding (k-1-p) on the left and
    # (k-1-p+output_padding) on the right reproduces PyTorch's cropping.
    lo = k - 1 - padding
    hi = k - 1 - padding + output_padding
    return lax.conv_transpose(
        x,
        jnp.swapaxes(kernel, 2, 3),
        strides=(stride, stride),
        padding=((lo, hi), (lo, hi)),
        dimension_numbers=_DN,
        transpose_kernel=True,
    )


def _kernel_blocks(kernel, stride: int):
    """[k, k, Cin, Cout] -> [M, s, M, s, Cin, Cout] with tap a = s*m + r, zero-padded to
    M = ceil(k/s) blocks: the layout both sub-pixel rewrites start from."""
    k, _, cin, cout = kernel.shape
    m = math.ceil(k / stride)
    kp = jnp.pad(kernel, ((0, m * stride - k), (0, m * stride - k), (0, 0), (0, 0)))
    return kp.reshape(m, stride, m, stride, cin, cout)


def _phase_kernel(kernel, stride: int):
    """[k, k, Cin, Cout] scatter kernel -> [M, M, Cin, s*s*Cout] correlation kernel, M = ceil(k/s).

    Phase (r, c) of the full output at (s*q + r, s*q' + c) is
    ``sum_{m, n} x[q - m, q' - n] * kernel[r + s*m, c + s*n]``: a correlation of the input with
    the phase's sub-kernel flipped in space.
    """
    kp = _kernel_blocks(kernel, stride)
    m, _, _, _, cin, cout = kp.shape
    kp = kp[::-1, :, ::-1, :]  # flip the taps: scatter -> correlation
    # Output channel order (r, c, Cout) so that depth-to-space is a plain reshape.
    kp = kp.transpose(0, 2, 4, 1, 3, 5)
    return kp.reshape(m, m, cin, stride * stride * cout)


def _phase_conv(x, kernel, stride: int, padding: int, output_padding: int):
    """The transposed conv's output in phase layout, and where the PyTorch output lies in it.

    Returns ``(y, rows, cols)``: y [B, nh, nw, s, s, Cout] holds full-grid pixel
    ``(s*q + r, s*q' + c)`` at ``y[:, q, q', r, c]``; the PyTorch output [B, H', W', Cout] is
    the full grid's ``[:, rows, cols]`` (two slices).
    """
    b, h, w, _ = x.shape
    k, _, _, cout = kernel.shape
    m = math.ceil(k / stride)
    out_h = transposed_size(h, k, stride, padding, output_padding)
    out_w = transposed_size(w, k, stride, padding, output_padding)
    # Only the phase cells q covering the full output rows [p, p + out) are computed.
    q0_h, q1_h = padding // stride, (padding + out_h - 1) // stride + 1
    q0_w, q1_w = padding // stride, (padding + out_w - 1) // stride + 1
    # Cell q needs x[q - m + 1 .. q]: pad so that VALID output index j is cell q0 + j.
    pads = [(0, 0, 0), (m - 1 - q0_h, q1_h - h, 0), (m - 1 - q0_w, q1_w - w, 0), (0, 0, 0)]
    y = conv_valid(lax.pad(x, jnp.zeros((), x.dtype), pads), _phase_kernel(kernel, stride))
    y = y.reshape(b, q1_h - q0_h, q1_w - q0_w, stride, stride, cout)
    off_h, off_w = padding - q0_h * stride, padding - q0_w * stride
    return y, slice(off_h, off_h + out_h), slice(off_w, off_w + out_w)


def _depth_to_space(y):
    """[B, nh, nw, s, s, ...] phase layout -> [B, nh*s, nw*s, ...] image layout."""
    b, nh, nw, s, _, *rest = y.shape
    y = y.transpose(0, 1, 3, 2, 4, *range(5, y.ndim))
    return y.reshape(b, nh * s, nw * s, *rest)


def conv_transpose_phases(x, kernel, stride: int, padding: int, output_padding: int):
    """The same function as `conv_transpose_reference`, computed as one VALID convolution with
    ``s*s*Cout`` output channels (no zero-dilated input) and a depth-to-space shuffle.
    x [B, H, W, Cin], kernel [k, k, Cin, Cout] -> [B, H', W', Cout]."""
    y, rows, cols = _phase_conv(x, kernel, stride, padding, output_padding)
    return _depth_to_space(y)[:, rows, cols]


def conv_transpose_then_conv(
    x, kernel_t, bias_t, kernel, stride: int, padding: int, output_padding: int, activation
):
    """``conv_valid(activation(conv_transpose(x, kernel_t) + bias_t), kernel)`` without the
    wide activation ever in image layout.

    x [B, H, W, Cin], kernel_t [k, k, Cin, C] (a PyTorch transposed conv's stride, padding and
    output_padding), bias_t [C], kernel [kh, kw, C, O] (stride 1, VALID, no bias) ->
    [B, H' - kh + 1, W' - kw + 1, O].

    The activation and ``kernel``'s per-tap products run on the transposed conv's phase layout
    (`_phase_conv`); only the taps' kh*kw*O channels go through depth-to-space, where the
    obvious form shuffles all C channels of the activation (GG-CNN's heads: 16 instead of 32
    channels at 301 x 301, and the largest copy of the forward pass). The taps are summed as
    `conv_valid` sums them, so the forward values equal the obvious form's.
    """
    y, rows, cols = _phase_conv(x, kernel_t, stride, padding, output_padding)
    taps = _depth_to_space(_tap_products(activation(y + bias_t), kernel))
    return _sum_taps(taps, kernel.shape[:2], rows, cols)


def conv_valid(x, kernel):
    """A stride-1 VALID correlation as matrix products: x [B, H, W, Cin], kernel [kh, kw, Cin,
    Cout] -> [B, H-kh+1, W-kw+1, Cout].

    XLA:CPU runs large matrix products far better than its convolutions (and their gradients)
    at most of GG-CNN's shapes. The product is taken on whichever side is narrower: im2col
    (patches of kh*kw*Cin channels times the kernel) when Cin < Cout, otherwise every tap's
    output at once (x times a [Cin, kh*kw*Cout] matrix) followed by a sum of shifted slices.
    (Forms chosen by fwd+bwd timings of each GG-CNN layer on a 2-core x86 CPU.)
    """
    _, h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    ho, wo = h - kh + 1, w - kw + 1
    if kh == kw == 1:
        return _dot2d(x, kernel[0, 0])
    if cin >= LAX_CONV_MIN_CIN:
        # Wide inputs (conv2 after space-to-depth: 128 channels) are dense enough for XLA's
        # own convolution, which measured faster here than either product form.
        return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DN)
    if cin < cout:
        cols = [x[:, a : a + ho, c : c + wo, :] for a in range(kh) for c in range(kw)]
        return _dot2d(jnp.concatenate(cols, axis=-1), kernel.reshape(kh * kw * cin, cout))
    return _sum_taps(_tap_products(x, kernel), (kh, kw), slice(0, h), slice(0, w))


def _tap_products(x, kernel):
    """x [..., Cin], kernel [kh, kw, Cin, Cout] -> [..., kh*kw, Cout]: every tap's product at
    every position, as one [Cin, kh*kw*Cout] matrix product."""
    kh, kw, cin, cout = kernel.shape
    taps = _dot2d(x, kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout))
    return taps.reshape(*x.shape[:-1], kh * kw, cout)


def _sum_taps(taps, kernel_size, rows: slice, cols: slice):
    """The VALID correlation from `_tap_products` in image layout: taps [B, H, W, kh*kw, Cout]
    -> [B, h - kh + 1, w - kw + 1, Cout] over the window ``taps[:, rows, cols]`` (h, w its
    size), each output the sum of its taps' shifted slices in row-major tap order."""
    kh, kw = kernel_size
    ho, wo = rows.stop - rows.start - kh + 1, cols.stop - cols.start - kw + 1
    out = 0
    for a in range(kh):
        for c in range(kw):
            r0, c0 = rows.start + a, cols.start + c
            out = out + taps[:, r0 : r0 + ho, c0 : c0 + wo, a * kw + c, :]
    return out


def _dot2d(x, w):
    """x [..., K] times w [K, N] -> [..., N], as a product of a [M, K] matrix: the gradient's
    products are then plain matrix products too (of a [..., K] operand, XLA:CPU transposed the
    output's gradient into a copy that cost as much as the product)."""
    return jnp.dot(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[-1])


def space_to_depth_kernel(kernel, stride: int):
    """[k, k, Cin, Cout] -> [M, M, s*s*Cin, Cout], M = ceil(k/s): the kernel of the stride-1
    conv that `conv` runs on the space-to-depth input (channel order (r, c, Cin))."""
    kp = _kernel_blocks(kernel, stride)
    m, _, _, _, cin, cout = kp.shape
    return kp.transpose(0, 2, 1, 3, 4, 5).reshape(m, m, stride * stride * cin, cout)


def conv(x, kernel, stride: int, padding: int):
    """PyTorch ``Conv2d`` (no bias): x [B, H, W, Cin], kernel [k, k, Cin, Cout].

    A strided conv is regrouped as a stride-1 conv: s x s input blocks become channels
    (space-to-depth) and the kernel is rearranged to match, then `conv_valid` takes over.
    """
    b, h, w, cin = x.shape
    if b == 1 and stride > 1 and cin < 64:
        # Single-image forward (the robot): XLA's own strided conv measured 2-3x faster here.
        return conv_reference(x, kernel, stride, padding)
    k = kernel.shape[0]
    m = math.ceil(k / stride)
    out_h = (h + 2 * padding - k) // stride + 1
    out_w = (w + 2 * padding - k) // stride + 1
    need_h, need_w = (out_h + m - 1) * stride, (out_w + m - 1) * stride
    # Rows beyond need_* are never read by the conv; crop them, pad when short.
    x = jnp.pad(
        x,
        (
            (0, 0),
            (padding, max(0, need_h - h - padding)),
            (padding, max(0, need_w - w - padding)),
            (0, 0),
        ),
    )[:, :need_h, :need_w, :]
    if stride > 1:
        x = x.reshape(b, need_h // stride, stride, need_w // stride, stride, cin)
        x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, need_h // stride, need_w // stride, -1)
        kernel = space_to_depth_kernel(kernel, stride)
    return conv_valid(x, kernel)


def conv_reference(x, kernel, stride: int, padding: int):
    """PyTorch ``Conv2d`` (no bias) via ``lax.conv_general_dilated``: the obvious form."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=_DN,
    )


def torch_bias_init(fan_in: int):
    """PyTorch's default bias init, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    PyTorch takes fan_in from ``weight.shape[1] * k * k``: ``Cin*k*k`` for a conv but
    ``Cout*k*k`` for a transposed conv.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init

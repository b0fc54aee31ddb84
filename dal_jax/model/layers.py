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
    """The transposed conv's output in phase layout, and where the PyTorch output starts in it.

    Returns ``(y, off_h, off_w)``: y [B, nh, nw, s, s, Cout] holds full-grid pixel
    ``(s*q + r, s*q' + c)`` at ``y[:, q, q', r, c]``; the PyTorch output is the full grid's
    rows ``off_h : off_h + H'`` and columns ``off_w : off_w + W'``.
    """
    b, h, w, _ = x.shape
    k, _, _, cout = kernel.shape
    s = stride
    m = math.ceil(k / s)
    out_h = transposed_size(h, k, s, padding, output_padding)
    out_w = transposed_size(w, k, s, padding, output_padding)
    # Only the phase cells q covering the full output rows [p, p + out) are computed.
    q0_h, q1_h = padding // s, (padding + out_h - 1) // s + 1
    q0_w, q1_w = padding // s, (padding + out_w - 1) // s + 1
    # Cell q needs x[q - m + 1 .. q]: pad so that VALID output index j is cell q0 + j.
    pads = [(0, 0, 0), (m - 1 - q0_h, q1_h - h, 0), (m - 1 - q0_w, q1_w - w, 0), (0, 0, 0)]
    y = conv_valid(lax.pad(x, jnp.zeros((), x.dtype), pads), _phase_kernel(kernel, s))
    y = y.reshape(b, q1_h - q0_h, q1_w - q0_w, s, s, cout)
    return y, padding - q0_h * s, padding - q0_w * s


def _depth_to_space(y):
    """[B, nh, nw, s, s, ...] phase layout -> [B, nh*s, nw*s, ...] image layout."""
    b, nh, nw, s, _, *rest = y.shape
    y = y.transpose(0, 1, 3, 2, 4, *range(5, y.ndim))
    return y.reshape(b, nh * s, nw * s, *rest)


def conv_transpose_phases(x, kernel, stride: int, padding: int, output_padding: int):
    """The same function as `conv_transpose_reference`, computed as one VALID convolution with
    ``s*s*Cout`` output channels (no zero-dilated input) and a depth-to-space shuffle.
    x [B, H, W, Cin], kernel [k, k, Cin, Cout] -> [B, H', W', Cout]."""
    k = kernel.shape[0]
    out_h = transposed_size(x.shape[1], k, stride, padding, output_padding)
    out_w = transposed_size(x.shape[2], k, stride, padding, output_padding)
    y, off_h, off_w = _phase_conv(x, kernel, stride, padding, output_padding)
    return _depth_to_space(y)[:, off_h : off_h + out_h, off_w : off_w + out_w]


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
    channels at 301 x 301, and the largest copy of the forward pass). Each output sums its
    taps in `conv_valid`'s order, so the forward values equal the obvious form's.
    """
    kh, kw, c, o = kernel.shape
    k = kernel_t.shape[0]
    out_h = transposed_size(x.shape[1], k, stride, padding, output_padding) - kh + 1
    out_w = transposed_size(x.shape[2], k, stride, padding, output_padding) - kw + 1
    y, off_h, off_w = _phase_conv(x, kernel_t, stride, padding, output_padding)
    taps = _dot2d(activation(y + bias_t), kernel.transpose(2, 0, 1, 3).reshape(c, kh * kw * o))
    taps = _depth_to_space(taps.reshape(*y.shape[:5], kh * kw, o))
    out = 0
    for a in range(kh):
        for b in range(kw):
            rows, cols = slice(off_h + a, off_h + a + out_h), slice(off_w + b, off_w + b + out_w)
            out = out + taps[:, rows, cols, a * kw + b, :]
    return out


def conv_valid(x, kernel):
    """A stride-1 VALID correlation as matrix products: x [B, H, W, Cin], kernel [kh, kw, Cin,
    Cout] -> [B, H-kh+1, W-kw+1, Cout].

    XLA:CPU runs large matrix products far better than its convolutions (and their gradients)
    at most of GG-CNN's shapes. The product is taken on whichever side is narrower: im2col
    (patches of kh*kw*Cin channels times the kernel) when Cin < Cout, otherwise every tap's
    output at once (x times a [Cin, kh*kw*Cout] matrix) followed by a sum of shifted slices.
    (Forms chosen by fwd+bwd timings of each GG-CNN layer on a 2-core x86 CPU.)
    """
    b, h, w, cin = x.shape
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
    taps = _dot2d(x, kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout))
    taps = taps.reshape(b, h, w, kh * kw, cout)
    out = 0
    for a in range(kh):
        for c in range(kw):
            out = out + taps[:, a : a + ho, c : c + wo, a * kw + c, :]
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

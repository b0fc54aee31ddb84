"""GG-CNN and the DAL discriminator as pure Flax (linen) modules, NHWC.

GG-CNN (Morrison et al., RSS 2018): three strided convs (the encoder), three
transposed convs with PyTorch semantics (300 -> 50 -> 100 -> 301) and four 2x2 heads
(-> 300). 62,420 parameters for depth input, 70,196 for RGB-D.

Parameter names and meanings follow the PyTorch module (``conv1`` ... ``convt3``, ``pos``,
``cos``, ``sin``, ``width``; see `dal_jax.model.layers` for the kernel layout), so a PyTorch
state_dict converts one to one (`dal_jax.model.convert_torch`).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from dal_jax.model import layers

# name, out channels, kernel, stride, padding (GG-CNN's reference model).
ENCODER = (("conv1", 32, 9, 3, 3), ("conv2", 16, 5, 2, 2), ("conv3", 8, 3, 2, 1))
# name, out channels, kernel, stride, padding, output_padding.
DECODER = (
    ("convt1", 8, 3, 2, 1, 1),
    ("convt2", 16, 5, 2, 2, 1),
    ("convt3", 32, 9, 3, 3, 1),
)
HEADS = ("pos", "cos", "sin", "width")
SIZE_MULTIPLE = 12  # 3 * 2 * 2: every stride divides the input exactly.


class Features(NamedTuple):
    """The encoder's three feature levels: [B, H/3, W/3, 32], [B, H/6, W/6, 16],
    [B, H/12, W/12, 8] (the bottleneck)."""

    f1: jax.Array
    f2: jax.Array
    f3: jax.Array


def check_input(x, in_channels: int | None = None):
    """Raises a clear ValueError for inputs GG-CNN cannot take: x must be [..., H, W, C] with
    H and W positive multiples of 12 and C == in_channels (when given)."""
    if x.ndim < 3:
        raise ValueError(f"GG-CNN input must be [..., H, W, C]; got shape {tuple(x.shape)}")
    h, w, c = x.shape[-3:]
    if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(
            f"GG-CNN input size must be a positive multiple of {SIZE_MULTIPLE} "
            f"(strides 3, 2, 2 must divide it); got {h}x{w} (shape {tuple(x.shape)})"
        )
    if in_channels is not None and c != in_channels:
        raise ValueError(
            f"GG-CNN was built for {in_channels} input channel(s) "
            f"(1 = depth, 4 = RGB-D); got {c} (shape {tuple(x.shape)})"
        )


INITS = ("torch", "xavier_zero", "he", "lecun_zero")


def _he_uniform(fan_in: float):
    """Uniform with variance 2 / fan_in (He et al. 2015: keeps ReLU activations' scale)."""
    bound = (6.0 / fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv_params(
    module: nn.Module, features: int, k: int, cin: int, stride: int, transposed: bool, scheme: str
):
    """Declares a conv layer's [k, k, Cin, Cout] kernel and bias on ``module``.

    ``scheme``: "torch" - GG-CNN's reference (Xavier-uniform kernels, PyTorch's default
    biases); "xavier_zero" - Xavier-uniform kernels, zero biases; "he" - He-uniform kernels
    (fan-in Cin*k*k, or Cin*k*k/stride^2 for a transposed conv: the inputs one output pixel
    sees), zero biases; "lecun_zero" - LeCun-normal kernels, zero biases (flax's ``nn.Conv``
    defaults: VAAL's VAE encoder, whose layers were ``nn.Conv``).
    """
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {scheme!r}")
    shape = (k, k, cin, features)
    if scheme == "he":
        fan_in = cin * k * k / (stride * stride if transposed else 1)
        kernel = module.param("kernel", _he_uniform(fan_in), shape)
    elif scheme == "lecun_zero":
        kernel = module.param("kernel", nn.initializers.lecun_normal(), shape)
    else:
        kernel = module.param("kernel", nn.initializers.xavier_uniform(), shape)
    if scheme != "torch":
        return kernel, module.param("bias", nn.initializers.zeros, (features,))
    fan_in = (features if transposed else cin) * k**2
    return kernel, module.param("bias", layers.torch_bias_init(fan_in), (features,))


class _Params(nn.Module):
    """A conv layer's kernel and bias, declared without applying them (the heads, and the last
    transposed conv when it is fused with them)."""

    features: int
    kernel: int
    stride: int = 1
    transposed: bool = False
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, cin: int):
        return _conv_params(
            self, self.features, self.kernel, cin, self.stride, self.transposed, self.init_scheme
        )


class TorchConv(nn.Module):
    """PyTorch-semantics conv or transposed conv: a [k, k, Cin, Cout] kernel and a bias."""

    features: int
    kernel: int
    stride: int
    padding: int
    output_padding: int | None = None  # None: a plain conv
    fast: bool = True
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x):
        transposed = self.output_padding is not None
        kernel, bias = _conv_params(
            self, self.features, self.kernel, x.shape[-1], self.stride, transposed, self.init_scheme
        )
        if transposed:
            fn = layers.conv_transpose_phases if self.fast else layers.conv_transpose_reference
            return fn(x, kernel, self.stride, self.padding, self.output_padding) + bias
        fn = layers.conv if self.fast else layers.conv_reference
        return fn(x, kernel, self.stride, self.padding) + bias


class Encoder(nn.Module):
    """GG-CNN's three strided convs. x [B, H, W, C] -> `Features`."""

    fast: bool = True
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x) -> Features:
        feats = []
        for name, c, k, s, p in ENCODER:
            x = nn.relu(
                TorchConv(c, k, s, p, fast=self.fast, init_scheme=self.init_scheme, name=name)(x)
            )
            feats.append(x)
        return Features(*feats)


class Decoder(nn.Module):
    """Transposed convs and heads. Bottleneck [B, h, w, 8] -> maps [B, 12h, 12w, 4] in the
    channel order (pos, cos, sin, width)."""

    fast: bool = True
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, z):
        *first, (name, c, k, s, p, op) = DECODER
        for args in first:
            conv = TorchConv(*args[1:], fast=self.fast, init_scheme=self.init_scheme, name=args[0])
            z = nn.relu(conv(z))
        # The four 2x2 heads run as one 4-channel conv: one pass over the largest activation.
        last = _Params(c, k, s, True, self.init_scheme, name=name)(z.shape[-1])
        heads = [_Params(1, 2, init_scheme=self.init_scheme, name=n)(c) for n in HEADS]
        kernel = jnp.concatenate([k for k, _ in heads], axis=-1)
        bias = jnp.concatenate([b for _, b in heads])
        if self.fast:
            # convt3 and the heads in one: its 32-channel output never leaves phase layout.
            out = layers.conv_transpose_then_conv(z, *last, kernel, s, p, op, nn.relu)
            return out + bias
        z = nn.relu(layers.conv_transpose_reference(z, last[0], s, p, op) + last[1])
        return layers.conv_reference(z, kernel, 1, 0) + bias


class GGCNN(nn.Module):
    """GG-CNN. ``x`` [B, H, W, C] (H, W multiples of 12) -> (maps [B, H, W, 4], `Features`).

    ``fast`` selects the XLA:CPU-friendly forms of the strided and transposed convs; both forms
    compute the same function with the same parameters. ``input_scale`` multiplies the input
    before conv1 (part of the model, so training, evaluation and inference apply the same one;
    stored in checkpoint metadata; 1 for converted PyTorch weights). ``init_scheme``
    (see `_conv_params`) only changes initialisation.
    """

    fast: bool = True
    input_scale: float = 1.0
    init_scheme: str = "torch"

    def setup(self):
        self.encoder = Encoder(self.fast, self.init_scheme)
        self.decoder = Decoder(self.fast, self.init_scheme)

    def __call__(self, x):
        feats = self.encode(x)
        return self.decoder(feats.f3), feats

    def encode(self, x) -> Features:
        if self.input_scale != 1.0:
            x = x * jnp.asarray(self.input_scale, x.dtype)
        return self.encoder(x)


def pooled(f3):
    """Bottleneck [B, h, w, C] -> [B, 2C]: mean and max over space (the discriminator's and
    core-set's image embedding)."""
    return jnp.concatenate([f3.mean(axis=(1, 2)), f3.max(axis=(1, 2))], axis=-1)


class Discriminator(nn.Module):
    """DAL's discriminator: pooled bottleneck [B, 2C] -> logit [B] of P(x is labelled).

    With C = 8 and the paper's hidden = (64, 16) (`dal_jax.strategies.dal.HIDDEN`):
    16*64+64 + 64*16+16 + 16+1 = 2,145 parameters.
    """

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, z):
        for i, h in enumerate(self.hidden):
            z = nn.relu(nn.Dense(h, name=f"fc{i + 1}")(z))
        return nn.Dense(1, name="out")(z)[..., 0]


def count_params(params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))

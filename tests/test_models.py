"""GG-CNN: shapes, parameter counts, fast layer forms == reference forms, PyTorch equivalence."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax.model import convert_torch, layers, models
from dal_jax.strategies import dal

PEER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "peer" / "torch_ggcnn.py"


@pytest.mark.parametrize("channels, expected", [(1, 62_420), (4, 70_196)])
def test_parameter_counts_and_shapes(channels, expected):
    x = jax.ShapeDtypeStruct((2, 300, 300, channels), jnp.float32)
    model = models.GGCNN()
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    assert models.count_params(params) == expected
    maps, feats = jax.eval_shape(model.apply, {"params": params}, x)
    assert maps.shape == (2, 300, 300, 4)
    assert feats.f1.shape == (2, 100, 100, 32)
    assert feats.f2.shape == (2, 50, 50, 16)
    assert feats.f3.shape == (2, 25, 25, 8)


def test_discriminator_is_about_2k_parameters():
    params = models.Discriminator(dal.HIDDEN).init(jax.random.key(0), jnp.zeros((1, 16)))["params"]
    assert models.count_params(params) == 2_145


@pytest.mark.parametrize(
    "size, cin, cout, k, s, p, op",
    [
        (25, 8, 8, 3, 2, 1, 1),  # convt1
        (50, 8, 16, 5, 2, 2, 1),  # convt2
        (100, 16, 32, 9, 3, 3, 1),  # convt3: 100 -> 301
        (7, 3, 5, 4, 3, 0, 0),  # kernel not a multiple of the stride
        (6, 2, 3, 5, 2, 3, 2),  # padding larger than (k - 1) / s
    ],
)
def test_phase_transposed_conv_equals_lax_conv_transpose(size, cin, cout, k, s, p, op):
    kx, kw = jax.random.split(jax.random.key(size))
    x = jax.random.normal(kx, (2, size, size + 1, cin))
    w = jax.random.normal(kw, (k, k, cin, cout)) / k
    ref = layers.conv_transpose_reference(x, w, s, p, op)
    fast = layers.conv_transpose_phases(x, w, s, p, op)
    assert (
        fast.shape
        == ref.shape
        == (2, *[layers.transposed_size(n, k, s, p, op) for n in (size, size + 1)], cout)
    )
    np.testing.assert_allclose(fast, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "size, cin, c, o, k, s, p, op, kh",
    [
        (12, 4, 6, 4, 9, 3, 3, 1, 2),  # convt3 and the heads, small
        (9, 3, 5, 2, 5, 2, 1, 1, 3),  # padding not a multiple of the stride, 3x3 after
        (7, 2, 3, 3, 4, 3, 0, 0, 2),  # kernel not a multiple of the stride
    ],
)
def test_transposed_conv_then_conv_equals_the_two_layers(size, cin, c, o, k, s, p, op, kh):
    """`conv_transpose_then_conv` (the activation and the second conv's taps on the phase
    layout) against the two layers written out: the reference forms, and the fast forms."""
    keys = jax.random.split(jax.random.key(size), 4)
    x = jax.random.normal(keys[0], (2, size, size + 3, cin))
    kt = jax.random.normal(keys[1], (k, k, cin, c)) / k
    bt = jax.random.normal(keys[2], (c,)) * 0.3
    kernel = jax.random.normal(keys[3], (kh, kh, c, o)) / kh
    fused = layers.conv_transpose_then_conv(x, kt, bt, kernel, s, p, op, jax.nn.relu)
    z = jax.nn.relu(layers.conv_transpose_reference(x, kt, s, p, op) + bt)
    ref = layers.conv_reference(z, kernel, 1, 0)
    out = [layers.transposed_size(n, k, s, p, op) - kh + 1 for n in (size, size + 3)]
    assert fused.shape == ref.shape == (2, *out, o)
    np.testing.assert_allclose(fused, ref, atol=2e-5, rtol=1e-5)
    z_fast = jax.nn.relu(layers.conv_transpose_phases(x, kt, s, p, op) + bt)
    np.testing.assert_allclose(fused, layers.conv_valid(z_fast, kernel), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "size, cin, cout, k, s, p",
    [
        (300, 1, 32, 9, 3, 3),
        (100, 32, 16, 5, 2, 2),
        (50, 16, 8, 3, 2, 1),
        (301, 32, 1, 2, 1, 0),
        (14, 3, 4, 4, 3, 1),
    ],
)
def test_space_to_depth_conv_equals_lax_conv(size, cin, cout, k, s, p):
    kx, kw = jax.random.split(jax.random.key(size))
    x = jax.random.normal(kx, (2, size, size, cin))
    w = jax.random.normal(kw, (k, k, cin, cout)) / k
    np.testing.assert_allclose(
        layers.conv(x, w, s, p), layers.conv_reference(x, w, s, p), atol=2e-5, rtol=1e-5
    )


def test_fast_and_reference_models_compute_the_same_function():
    x = jax.random.normal(jax.random.key(1), (2, 48, 48, 1))
    params = models.GGCNN(fast=True).init(jax.random.key(0), x)["params"]
    fast, _ = models.GGCNN(fast=True).apply({"params": params}, x)
    ref, _ = models.GGCNN(fast=False).apply({"params": params}, x)
    np.testing.assert_allclose(fast, ref, atol=1e-5)


def test_fast_and_reference_models_have_the_same_gradients():
    """The fast forms' backward passes (plain matrix products of the im2col, per-tap and 1x1
    forms: `layers._dot2d`) give the reference convolutions' parameter gradients."""
    x = jax.random.normal(jax.random.key(2), (2, 48, 48, 1))
    target = jax.random.normal(jax.random.key(3), (2, 48, 48, 4))
    params = models.GGCNN(fast=True).init(jax.random.key(0), x)["params"]

    def grads(fast):
        loss = lambda p: jnp.sum((models.GGCNN(fast=fast).apply({"params": p}, x)[0] - target) ** 2)
        return jax.grad(loss)(params)

    fast, ref = grads(True), grads(False)
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(fast), jax.tree.leaves(ref)):
        scale = float(jnp.max(jnp.abs(r)))
        np.testing.assert_allclose(g, r, atol=1e-4 * scale, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 50, 48, 1), "multiple of 12"),
        ((1, 48, 48, 3), "input channel"),
        ((48, 48), r"\[..., H, W, C\]"),
    ],
)
def test_bad_input_shapes_give_clear_errors(shape, match):
    with pytest.raises(ValueError, match=match):
        models.check_input(np.zeros(shape, np.float32), in_channels=1)


def _peer():
    torch = pytest.importorskip("torch", reason="TORCH NOT INSTALLED: equivalence test not run")
    if not PEER.exists():
        pytest.skip(f"PEER MODULE MISSING: {PEER} not found; equivalence test not run")
    spec = importlib.util.spec_from_file_location("torch_ggcnn", PEER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return torch, mod


def test_converted_pytorch_weights_give_pytorch_outputs(tmp_path):
    torch, peer = _peer()
    torch.manual_seed(3)
    net = peer.GGCNN().eval()
    state_path = tmp_path / "ggcnn.pt"
    torch.save(net.state_dict(), state_path)
    out_dir = tmp_path / "ckpt"
    meta = convert_torch.convert(state_path, out_dir)
    assert meta["in_channels"] == 1

    from dal_jax.model import checkpoint

    params, meta, _ = checkpoint.load_ggcnn(out_dir)
    x = np.random.default_rng(0).normal(size=(1, 300, 300, 1)).astype(np.float32)
    with torch.no_grad():
        ref = torch.cat(net(torch.from_numpy(x.transpose(0, 3, 1, 2))), dim=1).numpy()
    for fast in (True, False):
        ours, _ = models.GGCNN(fast=fast).apply({"params": params}, x)
        diff = np.abs(np.asarray(ours).transpose(0, 3, 1, 2) - ref).max()
        assert diff < 1e-4, (fast, diff)

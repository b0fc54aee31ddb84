"""VAAL: variational adversarial active learning (Sinha et al., ICCV 2019).

A VAE (latent 32, beta 1) on downsized pool images and a discriminator z -> 512 -> 512 -> 1 on
the VAE mean. Per task step (inside the trainer's compiled step, `VAALPlugin.extra_update`):
2 VAE steps (reconstruct labelled and unlabelled batches, and make D call both "labelled",
adversary weight 1), then 1 discriminator step (labelled = 1, unlabelled = 0); Adam 5e-4 for
both. The task model is plain GG-CNN: VAAL does not touch it. Selection: the k unlabelled
samples with the lowest D(mu).

Input size: pool images are downsized to 32 x 32, the size of the reference's CIFAR inputs, so
the VAE's layout (four stride-2 convs to 2 x 2) is the reference's; GG-CNN's 300 px inputs at
full size would need two more conv stages the reference does not have.

Departures from the reference code, all for a 2-core CPU: the VAE is narrower (conv widths
``widths`` 16-32-64-128, an eighth of the reference's 128-256-512-1024: 0.45 M parameters
against 22.8 M; at 32-64-128-256 VAAL's step still cost 2.8-5x RS's at 96 px, its decoder alone
about three times GG-CNN's multiply-adds; at 16-32-64-128 1.3-2.0x, 1.6x pooled) and has no
batch norm; both VAE steps of a task step reuse that step's batches (the reference draws a
fresh batch for the second one); and each VAE step (and the encoding for D's step) passes the
labelled and unlabelled batches through the VAE together, one pass of 2B images where the
reference makes two of B, which without batch norm is the same function (each half keeps its
own weighted means) in half the operations: the 10-seed program compiles in about 60 % of the
time (experiments/RESULTS.md, "VAAL's two batches in one VAE pass").
``--config.strategies.vaal.widths`` restores the reference widths on a machine that can afford
them. The VAE loss follows the reference: per-pixel mean squared error plus beta times the KL
divergence summed over latent units and batch samples.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dal_jax.model import models
from dal_jax.strategies import base
from dal_jax.training import plugin


class VAE(nn.Module):
    """x [B, size, size, C] (size a multiple of 16) -> (reconstruction [B, size, size, C],
    mu [B, latent], logvar [B, latent]).

    Encoder: 4 convs 4x4 stride 2 (size -> size/16), ReLU, then dense mu and logvar. Decoder:
    dense to [size/8, size/8, widths[-1]], 3 transposed convs 4x4 stride 2 (-> size), ReLU, and
    a 1x1 conv to C (the reference layout).
    """

    size: int = 32
    widths: tuple[int, ...] = (16, 32, 64, 128)
    latent: int = 32
    channels: int = 1

    def setup(self):
        # nn.Conv(w, (4, 4), strides=(2, 2), padding=1) with nn.Conv's parameters and initial
        # values, in the space-to-depth form: XLA:CPU's own strided conv and its gradient
        # measured 1.6x slower at these four shapes (16 images at 32 px).
        self.enc = [models.TorchConv(w, 4, 2, 1, init_scheme="lecun_zero") for w in self.widths]
        self.mu = nn.Dense(self.latent)
        self.logvar = nn.Dense(self.latent)
        side = self.size // 8
        self.dec_fc = nn.Dense(side * side * self.widths[-1])
        # PyTorch's ConvTranspose2d(4, stride 2, padding 1), as the reference, in the fast
        # sub-pixel form: XLA:CPU's transposed conv made VAAL's step 7x DAL's.
        self.dec = [models.TorchConv(w, 4, 2, 1, 0) for w in self.widths[-2::-1]]
        self.out = nn.Conv(self.channels, (1, 1))

    def encode(self, x):
        for conv in self.enc:
            x = nn.relu(conv(x))
        x = x.reshape(x.shape[0], -1)
        return self.mu(x), self.logvar(x)

    def decode(self, z):
        side = self.size // 8
        h = self.dec_fc(z).reshape(z.shape[0], side, side, self.widths[-1])
        for conv in self.dec:
            h = nn.relu(conv(h))
        return self.out(h)

    def __call__(self, x, key):
        mu, logvar = self.encode(x)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
        return self.decode(z), mu, logvar


class LatentDiscriminator(nn.Module):
    """VAE mean [B, latent] -> logit [B] of P(labelled); hidden layers 512, 512 with ReLU."""

    hidden: tuple[int, ...] = (512, 512)

    @nn.compact
    def __call__(self, z):
        for h in self.hidden:
            z = nn.relu(nn.Dense(h)(z))
        return nn.Dense(1)(z)[..., 0]


def downsize(x, size: int):
    """x [B, H, W, C] -> [B, size, size, C], antialiased bilinear (area-like) resampling."""
    b, _, _, c = x.shape
    return jax.image.resize(x.astype(jnp.float32), (b, size, size, c), "linear", antialias=True)


def _weighted_mean(v, w):
    return (v * w).sum() / jnp.maximum(w.sum(), 1.0)


def _part_means(v, w, labelled):
    """v, weights w, labelled [B] bool -> the labelled part's weighted mean of v plus the
    unlabelled part's: the reference's two batches, each with its own mean."""
    return _weighted_mean(v, w * labelled) + _weighted_mean(v, w * ~labelled)


class VAALPlugin(plugin.Plugin):
    """VAE + latent discriminator trained by their own steps (network name "vaal").

    params / opt_state: {"vae": ..., "disc": ...}.
    """

    name = "vaal"
    needs_unlabelled = True
    joint = False  # not in the joint loss: extra_update does all of VAAL's training

    def __init__(
        self,
        size=32,
        widths=(16, 32, 64, 128),
        latent=32,
        beta=1.0,
        adversary_weight=1.0,
        lr=5e-4,
        vae_steps=2,
        disc_steps=1,
        disc_hidden=(512, 512),
    ):
        if size % 16:
            raise ValueError(f"VAAL input size must be a multiple of 16; got {size}")
        self.size, self.widths, self.latent = int(size), tuple(widths), int(latent)
        self.beta, self.adversary_weight, self.lr = float(beta), float(adversary_weight), lr
        self.vae_steps, self.disc_steps = int(vae_steps), int(disc_steps)
        self.disc = LatentDiscriminator(tuple(disc_hidden))

    def vae(self, channels: int) -> VAE:
        return VAE(self.size, self.widths, self.latent, channels)

    def init(self, key, x):
        k_vae, k_disc, k_noise = jax.random.split(key, 3)
        xs = jnp.zeros((1, self.size, self.size, x.shape[-1]), jnp.float32)
        return {
            "vae": self.vae(x.shape[-1]).init(k_vae, xs, k_noise)["params"],
            "disc": self.disc.init(k_disc, jnp.zeros((1, self.latent)))["params"],
        }

    def optimizer(self):
        return optax.adam(self.lr)

    def init_opt_state(self, params):
        opt = self.optimizer()
        return {"vae": opt.init(params["vae"]), "disc": opt.init(params["disc"])}

    def mu(self, vae_params, x):
        """Full-size images x [B, H, W, C] -> VAE means [B, latent]."""
        xs = downsize(x, self.size)
        return self.vae(x.shape[-1]).apply({"params": vae_params}, xs, method=VAE.encode)[0]

    def disc_logits(self, disc_params, mu):
        return self.disc.apply({"params": disc_params}, mu)

    def score(self, params, x):
        """x [B, H, W, C] -> D(mu) logits [B] (higher = looks labelled)."""
        return self.disc_logits(params["disc"], self.mu(params["vae"], x))

    def per_sample_vae_loss(self, vae_params, x, key):
        """Full-size x [B, H, W, C] -> each sample's VAE loss [B]: mean squared reconstruction
        error + beta * KL divergence (a fixed ``key`` gives a repeatable measurement)."""
        xs = downsize(x, self.size)
        recon, mu, logvar = self.vae(x.shape[-1]).apply({"params": vae_params}, xs, key)
        kld = -0.5 * jnp.sum(1 + logvar - mu**2 - jnp.exp(logvar), axis=-1)
        return jnp.mean(jnp.square(recon - xs), axis=(1, 2, 3)) + self.beta * kld

    def vae_objective(self, vae_params, disc_params, x, w, labelled, key):
        """The VAE's loss on a step's labelled and unlabelled batches, taken in one pass:
        downsized x [Bl + Bu, s, s, C] (labelled first), weights w [Bl + Bu], labelled
        [Bl + Bu] bool -> (loss, metrics).

        The reference passes the two batches separately; without batch norm one pass of both
        is the same function (each part keeps its own weighted means) in half the operations."""
        recon, mu, logvar = self.vae(x.shape[-1]).apply({"params": vae_params}, x, key)
        mse = jnp.mean(jnp.square(recon - x), axis=(1, 2, 3))
        kld = -0.5 * jnp.sum(1 + logvar - mu**2 - jnp.exp(logvar), axis=-1)
        recon_loss = _part_means(mse, w, labelled)
        vae_loss = recon_loss + self.beta * (kld * w).sum()
        # The VAE tries to make D call everything labelled.
        fooled = optax.sigmoid_binary_cross_entropy(self.disc_logits(disc_params, mu), 1.0)
        fool = _part_means(fooled, w, labelled)
        metrics = {"vaal_vae_loss": vae_loss, "vaal_recon": recon_loss, "vaal_adv_loss": fool}
        return vae_loss + self.adversary_weight * fool, metrics

    def disc_objective(self, disc_params, mu, w, labelled):
        """mu [Bl + Bu, latent], weights and labelled [Bl + Bu] -> D's loss (labelled = 1)."""
        each = optax.sigmoid_binary_cross_entropy(
            self.disc_logits(disc_params, mu), labelled.astype(mu.dtype)
        )
        return _part_means(each, w, labelled)

    def extra_update(self, params, opt_state, inp: plugin.StepInputs, key):
        opt = self.optimizer()
        b = inp.x_l.shape[0]
        x = downsize(jnp.concatenate([inp.x_l, inp.x_u]), self.size)
        w = jnp.concatenate([inp.w_l, inp.w_u])
        labelled = jnp.arange(x.shape[0]) < b
        vae, disc = params["vae"], params["disc"]
        os_vae, os_disc = opt_state["vae"], opt_state["disc"]
        metrics = {}
        for i in range(self.vae_steps):
            grads, metrics = jax.grad(self.vae_objective, has_aux=True)(
                vae, disc, x, w, labelled, jax.random.fold_in(key, i)
            )
            updates, os_vae = opt.update(grads, os_vae, vae)
            vae = optax.apply_updates(vae, updates)
        encode = self.vae(x.shape[-1]).apply
        mu = jax.lax.stop_gradient(encode({"params": vae}, x, method=VAE.encode)[0])
        for _ in range(self.disc_steps):
            d_loss, grads = jax.value_and_grad(self.disc_objective)(disc, mu, w, labelled)
            updates, os_disc = opt.update(grads, os_disc, disc)
            disc = optax.apply_updates(disc, updates)
            metrics = {**metrics, "vaal_disc_loss": d_loss}
        return {"vae": vae, "disc": disc}, {"vae": os_vae, "disc": os_disc}, metrics


class VAAL(base.Strategy):
    """Lowest D(mu) first. Constructor fields are the plug-in's (see `VAALPlugin`)."""

    name = "vaal"

    def __init__(self, pool_batch: int = 16, **plugin_config):
        super().__init__(pool_batch)
        self.plugin = VAALPlugin(**plugin_config)

    def plugins(self, train_config):
        return (self.plugin,)

    def cache_key(self, trainer):
        p = self.plugin
        return (*super().cache_key(trainer), p.size, p.widths, p.latent, p.disc)

    def embed(self, trainer, params, xb):
        """xb [b, H, W, C] -> D(mu) logits [b]."""
        return self.plugin.score(params[self.plugin.name], xb)

    def choose(self, emb, shared, mask, key, k: int):
        """emb [N] logits, mask [N] labelled -> the k unlabelled with the lowest D(mu)."""
        return base.masked_top_k(-emb, ~mask, k)

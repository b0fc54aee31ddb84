"""How large learning loss's ranking term is next to the grasp loss, in the shared encoder.

    python -m experiments.ll_scale [--margins=1,0.1] [--seeds=3] [--steps=240] [--labelled=20]

Yoo & Kweon set the ranking loss's margin (1) and weight (1) for classification losses of order
1; GG-CNN's unweighted per-sample losses are about 1e-2, the recipe's (grasp pixels x20) larger. This trains LL (the synthetic protocol's recipe, 96 px,
``--labelled`` labelled images) for each margin and, every 24 steps, on a fixed labelled batch
per seed reports: GG-CNN's mean per-sample loss and its spread between pairs (what the ranking
compares), the ranking loss, and the ratio of the norms of the two terms' gradients with respect
to the shared encoder's parameters (ranking term with its weight / grasp loss). A ratio well
above 1 means the ranking term steers the encoder more than the task does.
"""

from __future__ import annotations

import argparse
import json


def measure(margin: float, seeds: int, steps: int, labelled: int, every: int = 24) -> list[dict]:
    """Rows {margin, step, task_loss, pair_gap, rank_loss, grad_ratio} (medians over seeds)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dal_jax.experiment import build
    from dal_jax.model import losses
    from dal_jax.strategies import ll
    from dal_jax.training.runs import Grid
    from experiments.configs import synthetic

    c = synthetic.get_config()
    c.seeds, c.strategy = seeds, "ll"
    c.strategies.ll.margin = margin
    c = build.resolve(c)
    ds = build.load_data(c)
    strategy = build.strategy(c)
    trainer = build.trainer(c, strategy)
    grid = Grid.of(c)
    masks = grid.initial_masks(len(ds.pool), labelled)
    inputs, targets = jnp.asarray(ds.pool.inputs), jnp.asarray(ds.pool.targets)
    plug = strategy.plugin
    tc = trainer.config

    def terms(params, x, y):
        maps, feats = trainer.model.apply({"params": params["ggcnn"]}, x)
        per = losses.ggcnn_loss(maps, y, tc.pos_weight, tc.weight_heads)
        w = jnp.ones(per.shape)
        rank = ll.ranking_loss(plug.predict(params["ll"], feats), per, w, plug.margin)
        return per, rank

    def grad_norms(params, x, y):
        def part(i, scale):
            def f(p):
                per, rank = terms(p, x, y)
                return (per.mean(), rank)[i] * scale

            g = jax.grad(f)(params)["ggcnn"]["encoder"]
            return jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree.leaves(g)))

        return part(0, 1.0), part(1, plug.weight)

    grad_norms = jax.jit(grad_norms)
    terms = jax.jit(terms)
    states = trainer.init_states(grid.keys(0, 0), inputs.shape[1:])
    batch_idx = [np.flatnonzero(m)[: tc.batch_size] for m in masks]
    rows = []
    for done in range(0, steps + 1, every):
        if done:
            states, _ = trainer.train(
                states, inputs, targets, jnp.asarray(masks), grid.hparams(), grid.keys(1, 0), every
            )
        vals = []
        for r in range(grid.num_runs):
            p = jax.tree.map(lambda a, r=r: a[r], states.params)
            x, y = inputs[batch_idx[r]], targets[batch_idx[r]].astype(jnp.float32)
            per, rank = terms(p, x, y)
            g_task, g_rank = grad_norms(p, x, y)
            per = np.asarray(per)
            gap = np.abs(per - per[::-1])[: len(per) // 2].mean()
            vals.append([per.mean(), gap, float(rank), float(g_rank / g_task)])
        med = np.median(np.asarray(vals), axis=0)
        rows.append(
            {
                "margin": margin,
                "step": done,
                "task_loss": round(float(med[0]), 4),
                "pair_gap": round(float(med[1]), 4),
                "rank_loss": round(float(med[2]), 4),
                "grad_ratio": round(float(med[3]), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.ll_scale", description=__doc__)
    p.add_argument("--margins", default="1,0.1", help="comma-separated ranking margins")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=240)
    p.add_argument("--labelled", type=int, default=20)
    args = p.parse_args(argv)
    for m in (float(v) for v in args.margins.split(",")):
        measure(m, args.seeds, args.steps, args.labelled)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Can a run's encoder tell the pool's rare object kinds from its common ones?

    python -m experiments.probe --workdir=runs/study/dal --round=1
    python -m experiments.probe --workdir=runs/study/rs --inputs=pooled,flat

For every seed's network of one round, Gissin's discriminator (a class-weighted MLP on the
standardised features, stopped on the held-out fifth of the pool it never trains on) learns to
tell the images holding a rare kind from the rest; its held-out balanced accuracy is printed per
discriminator input (pooled: the bottleneck's mean and max, 16 numbers; flat: the whole
bottleneck; multi: pooled features of every encoder depth). Near 0.5, no discriminator on
those features can steer DAL's picks towards the rare kinds (dal_jax.study.probe). Writes
probe_round<N>.json into the workdir. Pools with object kinds only (the synthetic scenes).
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir (experiments.main or a study's).")
_ROUND = flags.DEFINE_integer("round", None, "The round whose networks are probed (default: last).")
_INPUTS = flags.DEFINE_list("inputs", ["pooled", "flat", "multi"], "Discriminator inputs probed.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    from dal_jax.strategies import dal
    from dal_jax.study import probe

    logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value:
        print("error: --workdir is required (a run's workdir)", file=sys.stderr)
        sys.exit(2)
    bad = [i for i in _INPUTS.value if i not in dal.INPUTS]
    if bad:
        print(f"error: --inputs {bad}: valid: {', '.join(dal.INPUTS)}", file=sys.stderr)
        sys.exit(2)
    try:
        res = probe.run(_WORKDIR.value, _ROUND.value, tuple(_INPUTS.value))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = pathlib.Path(_WORKDIR.value) / f"probe_round{res['round']}.json"
    out.write_text(json.dumps(res, indent=1))
    print(
        f"round {res['round']} ({res['labeled']} labelled): {res['rare']} of {res['images']} "
        f"pool images hold a rare kind; held-out balanced accuracy ({res['held_out']} images):"
    )
    for which, acc in res["accuracy"].items():
        mean = sum(acc) / len(acc)
        print(f"  {which:7s} mean {mean:.2f}  per seed " + " ".join(f"{a:.2f}" for a in acc))
    print(f"-> {out}")


if __name__ == "__main__":
    app.run(main)

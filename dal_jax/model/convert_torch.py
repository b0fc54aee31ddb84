"""Convert an original PyTorch GG-CNN state_dict into a dal_jax checkpoint.

    python -m dal_jax.model.convert_torch --state_dict=ggcnn_epoch_23_cornell_statedict.pt --out=DIR

Accepts a ``state_dict`` file (or a whole pickled module, whose ``state_dict()`` is taken) with
the original layer names (``conv1`` ... ``convt3``, ``pos_output``/``pos``, ``cos_output``/
``cos``, ...). torch is imported only by this command. The result loads with
`dal_jax.robot.GraspDetector.from_checkpoint(DIR)` and `dal_jax.model.checkpoint.load_ggcnn`.
"""

from __future__ import annotations

import numpy as np

from dal_jax.model import models

# Head names used by the original GG-CNN code and by the peer module.
_HEAD_ALIASES = {name: (f"{name}_output", name) for name in models.HEADS}


def params_from_state_dict(state_dict) -> dict:
    """A PyTorch GG-CNN state_dict (name -> array-like) -> flax params of `models.GGCNN`.

    Conv weights [out, in, k, k] become [k, k, in, out]; transposed-conv weights
    [in, out, k, k] become [k, k, in, out] (see `dal_jax.model.layers`).
    """
    sd = {k.removeprefix("module."): np.asarray(v, dtype=np.float32) for k, v in state_dict.items()}

    def get(name):
        try:
            return sd[f"{name}.weight"], sd[f"{name}.bias"]
        except KeyError as e:
            raise KeyError(
                f"state_dict has no {e.args[0]!r}: not a GG-CNN state_dict? keys: {sorted(sd)}"
            ) from None

    enc, dec = {}, {}
    for name, *_ in models.ENCODER:
        w, b = get(name)
        enc[name] = {"kernel": w.transpose(2, 3, 1, 0), "bias": b}
    for name, *_ in models.DECODER:
        w, b = get(name)
        dec[name] = {"kernel": w.transpose(2, 3, 0, 1), "bias": b}
    for name, aliases in _HEAD_ALIASES.items():
        found = next((a for a in aliases if f"{a}.weight" in sd), aliases[0])
        w, b = get(found)
        dec[name] = {"kernel": w.transpose(2, 3, 1, 0), "bias": b}
    return {"encoder": enc, "decoder": dec}


def convert(state_dict_path, out_dir) -> dict:
    """Reads a .pt file with torch and writes a one-seed checkpoint to ``out_dir``.

    Returns the metadata written.
    """
    import pathlib

    import torch  # only this command needs torch

    from dal_jax.model import checkpoint
    from dal_jax.training import train

    path = pathlib.Path(state_dict_path)
    if not path.is_file():
        raise FileNotFoundError(f"state_dict file {path} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    params = params_from_state_dict({k: v.detach().cpu().numpy() for k, v in obj.items()})
    in_channels = params["encoder"]["conv1"]["kernel"].shape[2]
    trainer = train.Trainer(train.TrainConfig.reference(in_channels=in_channels))
    import jax

    state = trainer.init_states([jax.random.key(0)], (300, 300, in_channels))
    state = state.replace(
        params={"ggcnn": jax.tree.map(lambda a: np.asarray(a)[None], params)},
        opt_state=state.opt_state,
    )
    meta = {
        "source": f"torch:{path.name}",
        "in_channels": int(in_channels),
        "image_size": 300,
        "input_scale": 1.0,  # the original GG-CNN was trained on depth in metres
        "accuracy": [],
        "strategy": None,
        "dataset": None,
    }
    checkpoint.save(out_dir, 0, state, {"seeds": np.zeros((1,), np.int32)}, meta)
    return meta


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m dal_jax.model.convert_torch",
        description="Convert a PyTorch GG-CNN state_dict (e.g. the released "
        "ggcnn_epoch_23_cornell) into a dal_jax orbax checkpoint for inference.",
    )
    ap.add_argument("--state_dict", required=True, help="the .pt file (state_dict or module)")
    ap.add_argument("--out", required=True, help="folder to write the checkpoint into")
    args = ap.parse_args(argv)
    meta = convert(args.state_dict, args.out)
    print(f"wrote {args.out} ({meta['in_channels']} input channel(s))")


if __name__ == "__main__":
    main()

"""Builds one grasp dataset and prints a summary.

Usage (from the repository root):

  python -m datasets.prepare --dataset=NAME [--manual_dir=DIR] [--data_dir=DIR]
      [--config=CONFIG] [--set key=value ...]

NAME is cornell, cornell_noisy, jacquard_subset or synthetic_grasps. ``--set`` overrides config
fields (e.g. ``--set seed=3``, ``--set num_scenes=40 --set crop_size=48``). The summary lists
examples per split, rectangles per split, and every skipped file, scene or rectangle with the
reason.
"""

from __future__ import annotations

import argparse
import ast
import sys

import tensorflow_datasets as tfds

from dal_jax import data


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def summarise(builder) -> str:
    """A printable summary of a prepared builder: examples/rectangles per split, skips."""
    lines = [f"{builder.name}/{builder.builder_config.name} in {builder.data_dir}"]
    src = builder.as_data_source()
    for split in sorted(src):
        n_rects = sum(len(src[split][i]["rects"]) for i in range(len(src[split])))
        n_init = sum(bool(src[split][i]["initial"]) for i in range(len(src[split])))
        extra = f", {n_init} in the recorded initial labelled set" if n_init else ""
        lines.append(f"  {split}: {len(src[split])} examples, {n_rects} rectangles{extra}")
    meta = builder.info.metadata or {}
    skipped = meta.get("skipped", [])
    lines.append(f"  skipped rectangles (NaN / malformed): {meta.get('skipped_rects', 0)}")
    lines.append(f"  skipped items: {len(skipped)}")
    lines += [f"    {what}: {why}" for what, why in skipped]
    if meta.get("reused"):
        lines.append(f"  scenes reused from {meta['reused']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m datasets.prepare", description=__doc__.split("\n")[0]
    )
    p.add_argument("--dataset", required=True, choices=data.NAMES)
    p.add_argument("--manual_dir", default=None, help="folder with the downloaded raw data")
    p.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS' own)")
    p.add_argument("--config", default=None, help="builder config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, val = item.partition("=")
        overrides[key] = _value(val)
    builder = data.make_builder(args.dataset, args.data_dir, args.config, **overrides)
    dl_config = tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    try:
        builder.download_and_prepare(download_config=dl_config)  # tfds draws progress bars
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarise(builder))
    return 0


if __name__ == "__main__":
    sys.exit(main())

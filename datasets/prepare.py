"""Builds one grasp dataset and prints a summary.

Usage (from the repository root):

  python -m datasets.prepare --dataset=NAME [--manual_dir=DIR] [--data_dir=DIR]
      [--config=CONFIG] [--set key=value ...]

NAME is cornell, cornell_noisy, jacquard_subset, synthetic_grasps or frames. ``--set`` overrides config
fields (e.g. ``--set seed=3``, ``--set num_scenes=40 --set crop_size=48``). The summary lists
examples per split, rectangles per split, and every skipped file, scene or rectangle with the
reason. Bad input (an unknown --config or --set field, a value that cannot work, a split left
without any readable scene, a missing manual folder) prints one ``error: ...`` line, exit code 2.

A dataset already prepared in --data_dir is reused, except a ``frames`` dataset whose folder
changed since: given --manual_dir, frames added, removed or rewritten there (or another folder
than the one it was made from) rebuild it, which one line says before the build. The dataset
prepared before stays until the new one is complete (it is kept when the rebuild fails); the
folder itself is only read.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import pathlib
import shutil
import sys

import tensorflow_datasets as tfds

import datasets as grasp_datasets
from datasets import common


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
        if "labelled" in builder.info.features:
            n_lab = sum(bool(src[split][i]["labelled"]) for i in range(len(src[split])))
            extra += f", {n_lab} labelled"
        lines.append(f"  {split}: {len(src[split])} examples, {n_rects} rectangles{extra}")
    meta = builder.info.metadata or {}
    skipped = meta.get("skipped", [])
    lines.append(f"  skipped rectangles (NaN / malformed): {meta.get('skipped_rects', 0)}")
    lines.append(f"  skipped items: {len(skipped)}")
    lines += [f"    {what}: {why}" for what, why in skipped]
    if meta.get("reused"):
        lines.append(f"  scenes reused from {meta['reused']}")
    return "\n".join(lines)


def _overrides(dataset: str, items: list[str]) -> dict:
    """``--set KEY=VALUE`` items -> config overrides; ValueError naming the item when the key is
    not a field of the dataset's config (the message lists the fields)."""
    cls = grasp_datasets.builder_class(dataset)
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    fields = [
        f.name
        for f in dataclasses.fields(cls.builder_configs[cls.DEFAULT_CONFIG_NAME])
        if f.name not in base
    ]
    aliases = {"image_size"} | (
        {"crop_size"} if dataset in ("jacquard_subset", "frames") else set()
    )
    out = {}
    for item in items:
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set seed=3")
        if key not in fields and key not in aliases:
            raise ValueError(
                f"--set {item}: {dataset} has no config field {key!r}; fields: {', '.join(fields)}"
            )
        out[key] = _value(val)
    return out


def changed_since_prepared(dataset: str, builder, manual_dir) -> str | None:
    """Why the dataset prepared for ``builder`` no longer matches ``manual_dir`` (one line), or
    None: only a ``frames`` dataset is compared with its folder (a recording grows; the
    downloads of the other datasets do not change)."""
    if dataset != "frames" or manual_dir is None:
        return None
    from datasets.frames import frames_dataset_builder as frames

    return frames.changed_since_prepared(builder, manual_dir)


@contextlib.contextmanager
def set_aside(prepared: pathlib.Path):
    """Moves a prepared dataset folder aside while the block rebuilds it: removed when the
    block succeeds, put back when it fails (a rebuild must not lose the only copy)."""
    aside = prepared.with_name(f".{prepared.name}.previous")
    shutil.rmtree(aside, ignore_errors=True)  # left by a rebuild that was killed
    prepared.rename(aside)
    try:
        yield
    except BaseException:
        shutil.rmtree(prepared, ignore_errors=True)
        aside.rename(prepared)
        raise
    shutil.rmtree(aside)


def prepare(builder, args, overrides: dict):
    """The prepared builder: ``builder`` built now unless prepared before and still current (a
    stale ``frames`` dataset is rebuilt, saying so in one line)."""
    dl_config = tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    why = changed_since_prepared(args.dataset, builder, args.manual_dir)
    if why is None:
        builder.download_and_prepare(download_config=dl_config)  # tfds draws progress bars
        return builder
    print(f"{args.dataset}: {why}; rebuilding it", flush=True)
    try:
        with set_aside(pathlib.Path(builder.data_dir)):
            # A new builder: nothing of the old dataset's info (read at construction) carries on.
            builder = grasp_datasets.make_builder(
                args.dataset, args.data_dir, args.config, **overrides
            )
            builder.download_and_prepare(download_config=dl_config)
    except (FileNotFoundError, common.PrepareError) as e:
        raise type(e)(f"{e}; the dataset prepared before is kept") from e
    return builder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m datasets.prepare",
        description=__doc__.split("\n")[0],
        epilog=__doc__[__doc__.index("A dataset already prepared") :],
    )
    p.add_argument("--dataset", required=True, choices=grasp_datasets.NAMES)
    p.add_argument(
        "--manual_dir",
        default=None,
        help="folder with the downloaded raw data (frames: the folder of depth frames; a "
        "prepared frames dataset is rebuilt when this folder's frames changed since)",
    )
    p.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS' own)")
    p.add_argument("--config", default=None, help="builder config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    try:
        overrides = _overrides(args.dataset, args.set)
        # make_builder refuses an unknown --config (ValueError) and the builders refuse config
        # values that cannot work (ValueError naming the --set field).
        builder = grasp_datasets.make_builder(args.dataset, args.data_dir, args.config, **overrides)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        builder = prepare(builder, args, overrides)
    except (FileNotFoundError, common.PrepareError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarise(builder))
    return 0


if __name__ == "__main__":
    sys.exit(main())

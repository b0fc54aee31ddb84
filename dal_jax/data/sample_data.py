"""Where the real sample files are: the folder holding ``cornell/``, ``jacquard/`` and
``weights/`` (kept outside the repository, never copied in).

Commands that use it take ``--sample_data=DIR``; without the flag they read the environment
variable ``DAL_JAX_SAMPLE_DATA``, here and nowhere else. Nothing defaults to a folder outside
the repository: a command that needs the files and gets neither says so in one line.
"""

from __future__ import annotations

import os
import pathlib

ENV = "DAL_JAX_SAMPLE_DATA"
FLAG = "--sample_data"


def folder(given: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The sample-data folder: ``given`` (a flag's value), else $DAL_JAX_SAMPLE_DATA, else
    None. Not checked: see `require`."""
    value = given or os.environ.get(ENV)
    return pathlib.Path(value).expanduser() if value else None


def require(
    given: str | os.PathLike | None = None, needs: str = "cornell/, jacquard/"
) -> pathlib.Path:
    """The sample-data folder (`folder`); ValueError as one line naming the flag and the
    variable when neither gives it, or naming the one that gave a folder that does not exist.
    ``needs``: what the command reads from it, for the message."""
    path = folder(given)
    if path is None:
        raise ValueError(
            f"no sample-data folder: give {FLAG}=DIR or set {ENV}=DIR (DIR holds {needs})"
        )
    if not path.is_dir():
        source = f"{FLAG}={given}" if given else f"{ENV}={os.environ.get(ENV)}"
        raise ValueError(f"{source}: the folder does not exist (it should hold {needs})")
    return path

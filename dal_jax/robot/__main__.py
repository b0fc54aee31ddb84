"""``python -m dal_jax.robot``: the camera-to-grasp loop (`dal_jax.robot.cli.main`)."""

import sys

from dal_jax.robot.cli import main

if __name__ == "__main__":
    sys.exit(main())

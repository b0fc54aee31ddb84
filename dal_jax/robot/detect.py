"""``python -m dal_jax.robot.detect``: grasps in one depth frame (`dal_jax.robot.cli.detect_main`)."""

import sys

from dal_jax.robot.cli import detect_main

if __name__ == "__main__":
    sys.exit(detect_main())

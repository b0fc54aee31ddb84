"""The robot side: torch-free grasp detection on raw camera frames, and the camera-to-grasp loop.

This package is what the robot computer (Kinect2 on a Kinova MOVO) runs. Nothing in it imports
PyTorch, TensorFlow, TFDS, optax or the training code (`tests/test_robot_imports.py` checks
it); besides NumPy, JAX, Flax, Orbax, OpenCV and Pillow it uses only the shared modules
`dal_jax.model.models`, `dal_jax.model.layers`, `dal_jax.evaluation.postprocess`,
`dal_jax.data.grasp`, `dal_jax.data.preprocess`, `dal_jax.data.frames` and
`dal_jax.model.checkpoint`.

Modules:

- `detector`: `GraspDetector` - depth frame [H, W] in, `Grasp` list (frame pixels) out;
  `results`: `Grasp`, `Detection`; `network`: the compiled GG-CNN + post-processing;
  `weights`: checkpoint loading; `camera`: intrinsics and grasps in metres; `frames`: `Frame`
  (depth files and arrays to metres are `dal_jax.data.frames`' `read_depth` and
  `as_depth_metres`, exported here too); `figure`: a PNG of one detection.
- `sources` (`FolderSource`, `NpzSource`, `RosSource`), `sinks` (`StdoutSink`, `TcpSink`,
  `RosSink`), `ros` (the ROS 1 / 2 parts), `stream` (`LatestSlot`, `run`, `LoopStats`).
- `record`: `Recorder`, `record` - frames into a folder for the `frames` dataset
  (``python -m dal_jax.robot --record=DIR``).
- `cli`: the command lines ``python -m dal_jax.robot.detect`` (one frame) and
  ``python -m dal_jax.robot`` (the loop).
"""

from dal_jax.data.frames import as_depth_metres, read_depth
from dal_jax.robot.camera import parse_intrinsics
from dal_jax.robot.detector import MAX_TOP_K, GraspDetector
from dal_jax.robot.figure import save_figure
from dal_jax.robot.frames import Frame
from dal_jax.robot.results import Detection, Grasp
from dal_jax.robot.ros import RosSink, RosSource, image_msg_to_depth, ros_available
from dal_jax.robot.sinks import StdoutSink, TcpSink, make_sink
from dal_jax.robot.sources import FolderSource, NpzSource, make_source
from dal_jax.robot.stream import LatestSlot, LoopStats, run

__all__ = [
    "MAX_TOP_K",
    "Detection",
    "FolderSource",
    "Frame",
    "Grasp",
    "GraspDetector",
    "LatestSlot",
    "LoopStats",
    "NpzSource",
    "RosSink",
    "RosSource",
    "StdoutSink",
    "TcpSink",
    "as_depth_metres",
    "image_msg_to_depth",
    "make_sink",
    "make_source",
    "parse_intrinsics",
    "read_depth",
    "ros_available",
    "run",
    "save_figure",
]

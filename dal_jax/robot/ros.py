"""ROS 1 (rospy) or ROS 2 (rclpy), whichever is importable: depth frames in, grasps out.

`RosSource` subscribes to a sensor_msgs/Image topic (32FC1 metres or 16UC1 millimetres);
`RosSink` publishes each record as JSON in a std_msgs/String. Neither ROS package is imported
until one of them is constructed, so the rest of `dal_jax.robot` runs without ROS.
"""

from __future__ import annotations

import json
import sys
import threading

import numpy as np

from dal_jax.data import frames


def ros_available() -> str | None:
    """'rospy', 'rclpy' or None."""
    import importlib.util

    for name in ("rospy", "rclpy"):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return None


def image_msg_to_depth(msg, depth_scale: float | None = None) -> np.ndarray:
    """sensor_msgs/Image (32FC1 metres or 16UC1 millimetres) -> [H, W] float32 metres, without
    cv_bridge (which needs a matching OpenCV build on the robot). ``depth_scale``: metres per
    stored unit, overriding the units rule (`dal_jax.data.frames.as_depth_metres`)."""
    dtypes = {"32FC1": np.float32, "16UC1": np.uint16, "mono16": np.uint16}
    if msg.encoding not in dtypes:
        raise ValueError(f"unsupported depth encoding {msg.encoding!r} (32FC1 or 16UC1)")
    dt = np.dtype(dtypes[msg.encoding]).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    d = rows[:, : msg.width * dt.itemsize].copy().view(dt).reshape(msg.height, msg.width)
    return frames.as_depth_metres(d.astype(dt.newbyteorder("=")), depth_scale, name="frame")


def _init_rospy(node_name: str):
    """The rospy module, its node initialised (once per process, as rospy allows)."""
    import rospy

    if not rospy.core.is_initialized():
        rospy.init_node(node_name, anonymous=True, disable_signals=True)
    return rospy


def _rclpy_node(node_name: str):
    """(the rclpy module, a new node called ``node_name``)."""
    import rclpy

    if not rclpy.ok():
        rclpy.init()
    return rclpy, rclpy.create_node(node_name)


class RosSource:
    """Depth frames from a sensor_msgs/Image topic (ROS 1 via rospy or ROS 2 via rclpy). The
    subscriber callback is the producer: it always overwrites the slot (a camera never waits).
    Raises RuntimeError at construction when neither rospy nor rclpy can be imported."""

    paced = True

    def __init__(
        self, topic: str, node_name: str = "dal_jax_grasps", depth_scale: float | None = None
    ):
        self.topic = topic
        self.node_name = node_name
        self.depth_scale = depth_scale
        self.kind = ros_available()
        if self.kind is None:
            raise RuntimeError(
                f"cannot subscribe to {topic}: neither rospy (ROS 1) nor rclpy (ROS 2) is "
                "importable; source your ROS setup.bash, or replay frames with "
                "--source=folder:DIR or npz:FILE"
            )

    def attach(self, on_frame, stop: threading.Event):
        """Subscribes and spins (blocking) until ``stop`` is set; ``on_frame(Frame)``."""
        callback = self._callback(on_frame)
        from sensor_msgs.msg import Image

        if self.kind == "rospy":
            rospy = _init_rospy(self.node_name)
            sub = rospy.Subscriber(self.topic, Image, callback, queue_size=1, buff_size=2**24)
            while not stop.is_set() and not rospy.is_shutdown():
                stop.wait(0.1)
            sub.unregister()
        else:
            rclpy, node = _rclpy_node(self.node_name)
            node.create_subscription(Image, self.topic, callback, 1)
            while not stop.is_set() and rclpy.ok():
                rclpy.spin_once(node, timeout_sec=0.1)
            node.destroy_node()

    def _callback(self, on_frame):
        """The subscriber callback: an Image message -> ``on_frame(Frame)``, numbered from 0."""
        count = [0]
        warn_once = frames.WarnOnce()

        def callback(msg):
            s = msg.header.stamp
            sec = getattr(s, "secs", getattr(s, "sec", 0))
            nsec = getattr(s, "nsecs", getattr(s, "nanosec", 0))
            stamp = sec + nsec * 1e-9
            try:
                depth = warn_once(image_msg_to_depth, msg, self.depth_scale)
            except ValueError as e:
                print(f"bad frame from {self.topic}: {e}", file=sys.stderr)
                on_frame(frames.Frame(None, None, stamp, self.topic, count[0], error=str(e)))
            else:
                on_frame(frames.Frame(depth, None, stamp, self.topic, count[0], metres=True))
            count[0] += 1

        return callback


class RosSink:
    """Publishes each record as JSON in a std_msgs/String on ``topic`` (ROS 1 or 2)."""

    def __init__(self, topic: str, node_name: str = "dal_jax_grasps"):
        kind = ros_available()
        if kind is None:
            raise RuntimeError(
                f"cannot publish to {topic}: neither rospy nor rclpy is importable "
                "(use --sink=stdout or tcp:HOST:PORT)"
            )
        self.kind = kind
        from std_msgs.msg import String

        if kind == "rospy":
            self._pub = _init_rospy(node_name).Publisher(topic, String, queue_size=1)
        else:
            _, self._node = _rclpy_node(node_name + "_pub")
            self._pub = self._node.create_publisher(String, topic, 1)
        self._msg = String

    def send(self, record: dict):
        self._pub.publish(self._msg(data=json.dumps(record)))

    def close(self):
        if self.kind == "rclpy":
            self._node.destroy_node()

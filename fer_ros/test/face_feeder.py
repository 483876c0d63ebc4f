"""A stand-in camera for the launch tests: publishes a 640x480 frame with a real face (scikit-image's astronaut) on
each given image topic at a fixed rate, stamped with the publish time, until SIGINT or SIGTERM (exit code 0).

    python face_feeder.py --rate-hz 30 /cam_a/image:cam_a_optical_frame /cam_b/image:cam_b_optical_frame

Each TOPIC:FRAME_ID pair is one camera; the frame_id tells the answers of the cameras apart.
"""
from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image

from fer_ros.image_codec import encode_rgb8
from fer_ros.ros.spin import StopSignals, spin_until_shutdown


def face_image() -> Image:
    from skimage import data
    from conftest import place_faces  # the tests' real-face frame
    frame, _ = place_faces(data.astronaut(), 1, scale=0.9)
    raw = encode_rgb8(frame, "bgr8")
    msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=raw.is_bigendian,
                step=raw.step)
    msg.data = raw.data
    return msg


def camera(text: str) -> tuple[str, str]:
    topic, sep, frame_id = text.rpartition(":")
    if not sep or not topic or not frame_id:
        raise argparse.ArgumentTypeError(f"takes TOPIC:FRAME_ID, got {text!r}")
    return topic, frame_id


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("cameras", nargs="+", type=camera, metavar="TOPIC:FRAME_ID", help="image topic and its frame_id")
    p.add_argument("--rate-hz", type=float, default=30.0, help="frames per second on each topic")
    args = p.parse_args(argv)
    msg = face_image()
    with StopSignals() as stop:
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("face_feeder")
        publishers = [(node.create_publisher(Image, topic, qos_profile_sensor_data), frame_id)
                      for topic, frame_id in args.cameras]

        def publish() -> None:
            msg.header.stamp = node.get_clock().now().to_msg()
            for pub, frame_id in publishers:
                msg.header.frame_id = frame_id
                pub.publish(msg)

        node.create_timer(1.0 / args.rate_hz, publish)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.starting = False
        try:
            spin_until_shutdown(executor, node.context, stop.requested, timeout_sec=0.1)
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

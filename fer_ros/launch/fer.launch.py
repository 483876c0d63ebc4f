"""Start fer_node.

    ros2 launch fer_ros fer.launch.py image:=/camera/image_raw
    ros2 launch fer_ros fer.launch.py image:=/camera/image_raw backend:=onnxruntime debug_image:=true
    ros2 launch fer_ros fer.launch.py params_file:=/path/to/my_fer.yaml namespace:=robot1

backend, debug_image and model_path override the params file only when given.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _default_params_file() -> str:
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory("fer_ros"), "config", "fer.yaml")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes", "on")


def _node(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {}
    if arg("backend"):
        overrides["backend"] = arg("backend")
    if arg("debug_image"):
        overrides["publish_debug_image"] = _bool(arg("debug_image"))
    if arg("model_path"):
        overrides["model_path"] = arg("model_path")
    image = arg("image")
    return [Node(
        package="fer_ros",
        executable="fer_node",
        name="fer_node",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[arg("params_file") or _default_params_file()] + ([overrides] if overrides else []),
        remappings=[("image", image), ("image/compressed", image.rstrip("/") + "/compressed")],
        ros_arguments=["--log-level", arg("log_level")],
    )]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to read (its /compressed sibling is used "
                                          "when subscribe_compressed is true)"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameters YAML; empty = fer_ros/config/fer.yaml"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | onnxruntime | torch | tensorrt; empty = from the params file"),
        DeclareLaunchArgument("debug_image", default_value="",
                              description="true/false: publish the annotated image; empty = from the params file"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="model directory; empty = from the params file (default: shipped)"),
        DeclareLaunchArgument("log_level", default_value="info", description="node log level"),
        OpaqueFunction(function=_node),
    ])

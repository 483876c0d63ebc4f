"""Start fer_node: one, or one per camera, each in its camera's namespace.

    ros2 launch fer_ros fer.launch.py image:=/camera/image_raw
    ros2 launch fer_ros fer.launch.py image:=/camera/image_raw backend:=onnxruntime debug_image:=true
    ros2 launch fer_ros fer.launch.py params_file:=/path/to/my_fer.yaml namespace:=robot1
    ros2 launch fer_ros fer.launch.py cameras:=front,rear      # /front/fer_node reads /front/image_raw and
                                                               # publishes /front/emotion; the same for /rear

backend, debug_image, model_path and use_sim_time override the params file only when given. A relative `image` (no leading /) is resolved in each node's namespace; the node reads compressed images, where
subscribe_compressed is true, from `<image>/compressed`. An `image` that is not a valid topic name, a log_level that
is not a ROS severity, a boolean that is not one, or a params_file that does not exist stops the launch with one line
that says so.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

SINGLE_IMAGE = "/camera/image_raw"  # the image topic of the one node when `image` is empty
CAMERA_IMAGE = "image_raw"  # ... and of each camera's node, in the camera's namespace
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")  # the severities a node's --log-level takes


def _default_params_file() -> str:
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory("fer_ros"), "config", "fer.yaml")


def _bool(name: str, text: str) -> bool:
    """The launch argument `name`'s value `text` as a bool (true/false, 1/0, yes/no, on/off)."""
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"{name} must be true or false, got {text!r}")
    return value in ("true", "1", "yes", "on")


def _image(text: str) -> str:
    """The `image` argument, which must be a valid topic name (rclpy's check, also of the name as a node expands it)."""
    from rclpy.exceptions import NameValidationException
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name
    from rclpy.validate_topic_name import validate_topic_name
    try:
        validate_topic_name(text)
        validate_full_topic_name(expand_topic_name(text, "fer_node", "/"))
    except (NameValidationException, ValueError) as exc:
        reason = str(exc).splitlines()[0].removeprefix("Invalid topic name: ").rstrip(":")
        reason = reason.split(" is invalid: ", 1)[-1].split(", at ", 1)[0]
        raise ValueError(f"image {text!r} is not a valid topic name: {reason}; each part between slashes is letters, "
                         "digits and _ and does not start with a digit, e.g. /camera/image_raw") from None
    return text


def _log_level(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return value


def _params_file(text: str) -> str:
    """The parameters YAML of the `params_file` argument (empty: fer_ros/config/fer.yaml), which must exist."""
    if not text:
        return _default_params_file()
    if not os.path.isfile(text):
        raise ValueError(f"params_file {text!r} is not a file: give the path of a parameters YAML, or leave it "
                         "empty for fer_ros/config/fer.yaml")
    return text


def _cameras(text: str) -> list:
    """The camera namespaces of the `cameras` argument ("front,rear" or "front rear"), each once."""
    names = [c.strip().strip("/") for c in text.replace(",", " ").split()]
    names = [c for c in names if c]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(f"cameras: {', '.join(repeated)} given more than once")
    return names


def _join(*parts: str) -> str:
    inner = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return "/" + inner if inner else ""


def _nodes(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {}
    if arg("backend"):
        overrides["backend"] = arg("backend")
    if arg("debug_image"):
        overrides["publish_debug_image"] = _bool("debug_image", arg("debug_image"))
    if arg("model_path"):
        overrides["model_path"] = arg("model_path")
    if arg("use_sim_time"):
        overrides["use_sim_time"] = _bool("use_sim_time", arg("use_sim_time"))
    log_level = _log_level(arg("log_level"))
    parameters = [_params_file(arg("params_file"))] + ([overrides] if overrides else [])
    cameras = _cameras(arg("cameras"))
    namespaces = [_join(arg("namespace"), c) for c in cameras] if cameras else [arg("namespace")]
    image = _image(arg("image")) if arg("image") else (CAMERA_IMAGE if cameras else SINGLE_IMAGE)
    return [Node(
        package="fer_ros",
        executable="fer_node",
        name="fer_node",
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        parameters=parameters,
        remappings=[("image", image)],  # the node reads <image>/compressed from the same remapping
        ros_arguments=["--log-level", log_level],
    ) for namespace in namespaces]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="",
                              description="sensor_msgs/Image topic to read (its /compressed sibling is used when "
                                          "subscribe_compressed is true); a name without a leading / is in the "
                                          f"node's namespace. Empty = {SINGLE_IMAGE}, or {CAMERA_IMAGE} in each "
                                          "camera's namespace when cameras is given"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="camera namespaces, comma-separated (front,rear): one fer_node per "
                                          "camera in <namespace>/<camera>, publishing <camera>/emotion; "
                                          "empty = one fer_node"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameters YAML; empty = fer_ros/config/fer.yaml"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (with cameras: the namespace above the cameras')"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | onnxruntime | torch | tensorrt; empty = from the params file"),
        DeclareLaunchArgument("debug_image", default_value="",
                              description="true/false: publish the annotated image; empty = from the params file"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="model directory; empty = from the params file (default: shipped)"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="true/false: take the time from /clock (a bag played with --clock); "
                                          "empty = from the params file (default: false)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description=f"node log level: {', '.join(LOG_LEVELS)}"),
        OpaqueFunction(function=_nodes),
    ])

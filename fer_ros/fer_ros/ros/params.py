"""fer_node's parameters: declared once, with descriptors, and validated the same way at start and at run time.

Defaults here equal config/fer.yaml. Parameters marked read-only are fixed at start (they pick the model, the
backend or the topics); the others can be changed with `ros2 param set` and are validated before they apply.
"""
from __future__ import annotations

import difflib
import math
import textwrap
from dataclasses import dataclass, fields
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, NameValidationException
from rclpy.expand_topic_name import expand_topic_name
from rclpy.validate_full_topic_name import validate_full_topic_name
from rclpy.validate_topic_name import validate_topic_name

from fer_ros.face_state import NEUTRAL_POLICIES
from fer_ros.image_codec import DEFAULT_MAX_PIXELS
from fer_ros.pipeline import face_timeout_problem
from fer_ros.ros.spin import LOG_LEVELS
from fer_ros.runtime import BACKENDS, SETTING_HELP, SETTING_RANGES, RecognizerSettings

IMAGE_QOS = ("sensor_data", "best_effort", "reliable")
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")  # rclpy's own parameters of every node
ROS_PARAMETER_PREFIXES = ("qos_overrides.",)  # ... and the families rclpy reads
HELP = f"""usage: ros2 run fer_ros fer_node [--ros-args ...]   (or: python -m fer_ros.ros.node [--ros-args ...])

Facial expression recognition on one camera: sensor_msgs/Image on `image` in, fer_msgs/FaceEmotionArray on
`emotion` out. fer_node takes no options of its own; it is set with ROS arguments, after --ros-args:
  -p name:=value          set a parameter (e.g. -p max_faces:=2)
  --params-file FILE      parameters from a YAML file (fer_ros/config/fer.yaml has every default)
  -r image:=TOPIC         read the camera's images from TOPIC (and TOPIC/compressed)
  -r emotion:=TOPIC       publish on TOPIC (and the debug image on TOPIC/image)
  -r __ns:=/cam1          run in a namespace: every topic above is then under it
  -p use_sim_time:=true   take the time from /clock (a bag played with --clock)
  --log-level LEVEL       {", ".join(LOG_LEVELS)}"""
TYPE_HINTS = {  # how to write a value of each parameter type (the type of its default)
    bool: "true or false",
    int: "an integer, written without a decimal point (e.g. 5, not 5.0)",
    float: "a double, written with a decimal point (e.g. 5.0, not 5)",
    str: 'a string (in YAML, quote a value that would read as a number or a bool, e.g. "5")',
}


@dataclass
class FerParams(RecognizerSettings):
    """Values of all fer_node parameters: the recognizer's settings (runtime.RecognizerSettings, with the same
    defaults) and the node's own fields below (units in the names: _s seconds, _hz hertz)."""

    max_rate_hz: float = 0.0
    overlap_stages: bool = True
    image_qos: str = "sensor_data"
    image_qos_depth: int = 1
    subscribe_compressed: bool = False
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    output_topic: str = "emotion"
    publish_debug_image: bool = False
    publish_rep155: bool = False
    diagnostics_period_s: float = 1.0


def _setting(name: str, more: str = "") -> str:
    """The node's description of a recognizer setting: the words every tool uses (runtime.SETTING_HELP), and
    `more`."""
    text = SETTING_HELP[name]
    return text[0].upper() + text[1:] + more + "."


def _range(name: str) -> IntegerRange:
    """The descriptor range of the integer recognizer setting `name` (runtime.SETTING_RANGES)."""
    low, high = SETTING_RANGES[name]
    return IntegerRange(from_value=low, to_value=high, step=1)


DESCRIPTIONS: dict[str, tuple[str, bool, Any]] = {
    # name: (description, read_only, range or choices)
    "model_path": (_setting("model_path"), True, None),
    "backend": (_setting("backend"), True, BACKENDS),
    "device": (_setting("device"), True, None),
    "fp16": (_setting("fp16"), True, None),
    "int8": (_setting("int8"), True, None),
    "engine_cache_dir": (_setting("engine_cache_dir"), True, None),
    "num_threads": (_setting("num_threads", "; 0 = the backend's own choice"), True, _range("num_threads")),
    "max_faces": (_setting("max_faces"), True, _range("max_faces")),
    "landmark_threads": (_setting("landmark_threads"), True, _range("landmark_threads")),
    "min_face_size_px": (_setting("min_face_size_px"), False, _range("min_face_size_px")),
    "window_length": (_setting("window_length"), True, _range("window_length")),
    "neutral_policy": (_setting("neutral_policy"), False, NEUTRAL_POLICIES),
    "smoothing_time_constant_s": (_setting("smoothing_time_constant_s"), False,
                                  FloatingPointRange(from_value=0.0, to_value=60.0, step=0.0)),
    "face_timeout_s": (_setting("face_timeout_s", "; above 0"), False,
                       FloatingPointRange(from_value=0.0, to_value=600.0, step=0.0)),
    "max_rate_hz": ("Most frames processed per second; 0 = as many as arrive (newest first).", False,
                    FloatingPointRange(from_value=0.0, to_value=1000.0, step=0.0)),
    "overlap_stages": ("Landmark the next frame while the current one goes through the networks (two worker "
                       "threads): a higher frame rate with several faces, a few ms more latency when the CPU is "
                       "busy; false = one stage after the other.", True, None),
    "image_qos": ("QoS of the image subscriptions: sensor_data, best_effort or reliable.", True, IMAGE_QOS),
    "image_qos_depth": ("History depth of the image subscriptions.", True,
                        IntegerRange(from_value=1, to_value=100, step=1)),
    "subscribe_compressed": ("Also subscribe to <image>/compressed (sensor_msgs/CompressedImage): the image topic "
                             "after remapping, plus /compressed, as image_transport names it; a frame that arrives "
                             "on both is processed once.", True, None),
    "max_image_pixels": ("Images declaring more pixels (width x height) than this are refused before they are "
                         "decoded, raw and compressed alike; 8388608 = 8 MP.", False,
                         IntegerRange(from_value=1, to_value=1 << 30, step=1)),
    "output_topic": ("Topic of fer_msgs/FaceEmotionArray, in the node's namespace unless it starts with /; the "
                     "debug image goes to <output_topic>/image.", True, None),
    "publish_debug_image": ("Publish an annotated image (boxes, ids, labels) on <output_topic>/image.", False, None),
    "publish_rep155": ("Publish REP-155 /humans/faces/... topics (needs hri_msgs: without it, true is refused, "
                       "and set to false at start with a warning); face ids start with the node's fully qualified "
                       "name, so two nodes' ids differ.", False, None),
    "diagnostics_period_s": ("Period of the node's status on /diagnostics (s); its level is judged on the frames "
                             "of the last period.", True,
                             FloatingPointRange(from_value=0.1, to_value=60.0, step=0.0)),
}


def _descriptor(name: str) -> ParameterDescriptor:
    text, read_only, extra = DESCRIPTIONS[name]
    desc = ParameterDescriptor(description=text, read_only=read_only)
    if isinstance(extra, IntegerRange):
        desc.integer_range = [extra]
    elif isinstance(extra, FloatingPointRange):
        desc.floating_point_range = [extra]
    elif isinstance(extra, tuple):
        desc.additional_constraints = "one of: " + ", ".join(extra)
    return desc


def declare(node) -> FerParams:
    """Declare every parameter on `node` and return their values, validated (ValueError names the bad one)."""
    defaults = FerParams()
    values = {}
    for f in fields(FerParams):
        default = getattr(defaults, f.name)
        try:
            param = node.declare_parameter(f.name, default, _descriptor(f.name))
        except InvalidParameterTypeException as exc:
            said = str(exc).removesuffix(f": {f.name}")  # rclpy's text gives the value and both types
            raise ValueError(f"parameter {f.name} must be {TYPE_HINTS[type(default)]}; {said}") from None
        values[f.name] = param.value
    params = FerParams(**values)
    for name, value in values.items():
        problem = check(name, value)
        if problem:
            raise ValueError(problem)
    return params


def check(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for parameter `name`, or None. (Types and ranges are checked by rclpy from
    the descriptors; this checks choices and what descriptors cannot say.)"""
    extra = DESCRIPTIONS[name][2] if name in DESCRIPTIONS else None
    if isinstance(extra, tuple) and value not in extra:
        return f"parameter {name} must be one of {', '.join(extra)}, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"parameter {name} must be finite, got {value}"
    if name == "device" and not (value in ("auto", "cpu", "cuda") or
                                 (str(value).startswith("cuda:") and str(value)[5:].isdigit())):
        return f"parameter device must be auto, cpu, cuda or cuda:N, got {value!r}"
    if name == "face_timeout_s" and value <= 0:
        return f"parameter {face_timeout_problem(value)}"
    if name == "output_topic":
        return "parameter output_topic must not be empty" if not str(value) else _topic_name_problem(name, str(value))
    return None


def _topic_name_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be the topic of parameter `name`, or None."""
    reason = topic_name_reason(value)
    if reason is None:
        return None
    return (f"parameter {name} is not a valid topic name: {reason}, got {value!r}; each part between slashes is "
            "letters, digits and _ and does not start with a digit, e.g. emotion or /cam1/emotion")


def topic_name_reason(value: str, node_name: str = "fer_node") -> str | None:
    """Why `value` is not a valid topic name, or None: rclpy's own check of the name, and of the name expanded as
    node `node_name` in the root namespace would expand it (~ and substitutions), in rclpy's words without its
    markers and source locations. fer_node's topic parameters and fer-publish-bag's names are checked with it."""
    try:
        validate_topic_name(value)
        validate_full_topic_name(expand_topic_name(value, node_name, "/"))
    except (NameValidationException, ValueError) as exc:
        reason = str(exc).splitlines()[0].removeprefix("Invalid topic name: ").rstrip(":")
        return reason.split(" is invalid: ", 1)[-1].split(", at ", 1)[0]
    return None


def unknown_parameters(given, declared=()) -> str | None:
    """One line naming the parameters in `given` (set with -p or in a params file) that the node does not have,
    each with the closest name it has; None when there is none. rclpy's own parameters (ROS_PARAMETERS, and those
    under ROS_PARAMETER_PREFIXES) and those in `declared` are known."""
    known = set(DESCRIPTIONS) | set(declared) | set(ROS_PARAMETERS)
    unknown = sorted(n for n in set(given) - known if not n.startswith(ROS_PARAMETER_PREFIXES))
    if not unknown:
        return None
    said = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        said.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return (f"ignored parameter{'s' if len(unknown) > 1 else ''} {', '.join(said)}: fer_node has no such "
            "parameter; fer_node --help lists them")


def help_text() -> str:
    """fer_node's --help: how to set its parameters and remap its topics, and every parameter with its default."""
    width = max(len(name) for name in DESCRIPTIONS) + 2
    lines = [f"  {name:<{width}}{_yaml(getattr(FerParams(), name))}{'' if read_only else ' (run time)'}"
             + "".join(f"\n  {'':<{width}}{line}" for line in textwrap.wrap(text, 100 - width))
             for name, (text, read_only, _) in DESCRIPTIONS.items()]
    return "\n".join([HELP, "", "parameters (default; run time: ros2 param set changes it while the node runs):",
                      *lines])


def _yaml(value: Any) -> str:
    """`value` as a params file writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else str(value)

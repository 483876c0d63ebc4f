"""What the launch tests share: whether they can run here (and if not, what is missing), the stand-in camera, the
test side's ROS node, and the checks of a clean stop.

The launch stack (launch, launch_ros, launch_testing and the composition_interfaces messages launch_ros imports)
comes with a ROS 2 install; without one, `make setup` installs it where ../shared/ros2-launch exists. Where a
piece is missing, each launch test module holds one test that skips and names the piece.
"""
from __future__ import annotations

import sys
import time
import unittest
from pathlib import Path

FEEDER = Path(__file__).resolve().parent / "face_feeder.py"
START_TIMEOUT_S = 90.0  # two nodes loading their models on a busy 2-core machine


def missing_launch_stack() -> str | None:
    """Why launch tests cannot run in this pytest session, or None when they can."""
    if "launch_testing.pytest.hooks" not in sys.modules:
        try:
            import launch_testing
        except ImportError:
            launch_testing = None
        # a folder left without the package's files (caches only) imports as a namespace package, without __file__
        if getattr(launch_testing, "__file__", None) is None:
            return ("launch_testing is not installed (it comes with a ROS 2 install; without one, `make setup` "
                    "installs it where ../shared/ros2-launch exists)")
        return "launch_testing's pytest plugin is not loaded in this session"
    try:
        import launch_ros  # noqa: F401
    except ImportError as exc:
        reason = f"launch_ros does not import ({exc})"
        if getattr(exc, "name", "") == "composition_interfaces":
            reason += ": the composition_interfaces messages are not built (`make setup` builds them beside " \
                      "fer_msgs where ../shared/ros2-launch exists)"
        return reason
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return "ament_index_python is not installed"
    try:
        share = Path(get_package_share_directory("fer_ros"))
    except PackageNotFoundError:
        return "fer_ros is not in an install space on AMENT_PREFIX_PATH (run `make setup`, then `. scripts/env.sh`)"
    if not (share / "launch" / "fer.launch.py").is_file():
        return f"{share / 'launch' / 'fer.launch.py'} is not installed (run `make setup`)"
    return None


def fer_launch(**arguments: str):
    """fer_ros's fer.launch.py, included with these launch arguments."""
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    path = Path(get_package_share_directory("fer_ros")) / "launch" / "fer.launch.py"
    return IncludeLaunchDescription(PythonLaunchDescriptionSource(str(path)), launch_arguments=arguments.items())


def feeder(cameras: dict, rate_hz: float = 30.0):
    """The stand-in camera process: {image topic: frame_id} at `rate_hz`."""
    from launch.actions import ExecuteProcess
    return ExecuteProcess(cmd=[sys.executable, str(FEEDER), "--rate-hz", str(rate_hz),
                               *[f"{topic}:{frame_id}" for topic, frame_id in cameras.items()]],
                          name="face_feeder", output="screen")


class Listener:
    """The test side: an rclpy node in this process that gathers what arrives on some topics."""

    def __init__(self, name: str) -> None:
        import rclpy
        self.node = rclpy.create_node(name)
        self.got: dict[str, list] = {}

    def listen(self, msg_type, topic: str, qos=10) -> list:
        """Gather `topic`'s messages in the list returned."""
        got = self.got.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def spin_until(self, done, timeout_s: float) -> bool:
        """Spin until done() holds (True) or `timeout_s` passed (False)."""
        import rclpy
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return done()

    def parameters(self, node: str, names: list[str]) -> dict:
        """The values of `names` on the running node `node` (its fully qualified name)."""
        import rclpy
        from rclpy.parameter import parameter_value_to_python
        from rcl_interfaces.srv import GetParameters
        client = self.node.create_client(GetParameters, f"{node}/get_parameters")
        try:
            if not client.wait_for_service(timeout_sec=20.0):
                raise AssertionError(f"{node}/get_parameters is not offered")
            future = client.call_async(GetParameters.Request(names=names))
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=20.0)
            if future.result() is None:
                raise AssertionError(f"{node}/get_parameters did not answer")
            return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values)}
        finally:
            self.node.destroy_client(client)


class ListenerTestCase(unittest.TestCase):
    """Base of a launch test's live checks: rclpy and a `Listener` named `listener_name` for the class; a
    subclass subscribes in `listen_to()`."""

    listener_name = "fer_launch_test"

    @classmethod
    def setUpClass(cls):
        import rclpy
        rclpy.init()
        cls.listener = Listener(cls.listener_name)
        cls.listen_to()

    @classmethod
    def listen_to(cls) -> None:
        """Make the subscriptions (cls.listener.listen) the tests read."""

    @classmethod
    def tearDownClass(cls):
        import rclpy
        cls.listener.node.destroy_node()
        rclpy.try_shutdown()


class CleanStopChecks:
    """The post-shutdown checks of every launch test: exit code 0 and no ERROR line or traceback. Mixed into a
    `unittest.TestCase` marked `@launch_testing.post_shutdown_test()` in the launch test's module."""

    def test_every_process_exits_with_0(self, proc_info):
        # launch stops its processes with SIGINT while the camera still sends frames
        import launch_testing.asserts
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])

    def test_no_error_and_no_traceback(self, proc_output):
        self.assertEqual(error_lines(proc_output), [])


def ready_face(msg) -> bool:
    """A FaceEmotionArray with a face whose window was full (so it has a label)."""
    return any(f.window_ready for f in msg.faces)


def error_lines(proc_output) -> list[str]:
    """Every line of every launched process's output that reports an error or a traceback."""
    lines = []
    for io in proc_output:
        text = io.text.decode(errors="replace") if isinstance(io.text, bytes) else str(io.text)
        lines += [f"[{io.process_name}] {line}" for line in text.splitlines()
                  if "ERROR" in line or "Traceback" in line]
    return lines

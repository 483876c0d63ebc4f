#!/usr/bin/env bash
# Prints which ROS 2 the project builds against: `system-<distro>` when a ROS 2 install is sourced in this shell
# (ROS_DISTRO, AMENT_PREFIX_PATH and `ros2` on PATH), otherwise `wheels-jazzy` (ROS 2 Jazzy from PyPI wheels in
# .venv). The project's own environment, scripts/env.sh in wheels mode, marks itself with FER_ROS_FROM_WHEELS=1 and
# is not a system install: `make setup` run from a shell that sourced it keeps the wheels. Used by setup.sh.
set -uo pipefail
if [ "${FER_ROS_FROM_WHEELS:-}" != 1 ] && [ -n "${ROS_DISTRO:-}" ] && [ -n "${AMENT_PREFIX_PATH:-}" ] \
   && command -v ros2 >/dev/null 2>&1; then
  echo "system-$ROS_DISTRO"
else
  echo "wheels-jazzy"
fi

# Source this file to use the project's environment in a bash or zsh shell:  . scripts/env.sh
# It activates .venv, points ROS at it (when ROS 2 comes from the PyPI wheels), keeps ROS logs (log/ros) and built
# engines (.cache/engines) in the project and sources the colcon install space. `--no-install` skips the install
# space (used while building it). A POSIX sh (dash) cannot tell a sourced file its own path: there it only says so
# and returns 1.
# (The expansions are eval'ed: a shell without them need not parse them.)
if [ -n "${BASH_VERSION:-}" ]; then
  eval '_fer_root="${BASH_SOURCE[0]}"'
elif [ -n "${ZSH_VERSION:-}" ]; then
  eval '_fer_root="${(%):-%x}"'
else
  echo "scripts/env.sh needs bash or zsh, as sh cannot tell it where it is: bash -c '. scripts/env.sh && <command>'" >&2
  return 1
fi
_fer_root="$(cd "$(dirname "$_fer_root")/.." && pwd)"
export VIRTUAL_ENV="$_fer_root/.venv"
case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;; esac
if [ "$(bash "$_fer_root/scripts/ros_mode.sh")" = wheels-jazzy ]; then
  # ROS 2 from the wheels (no system ROS 2 sourced, by the same test setup.sh makes): the venv is the ROS prefix.
  export FER_ROS_FROM_WHEELS=1
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
  export ROS_DISTRO=jazzy
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
fi
# ROS 2's logs and the built-engine cache stay in the project tree unless the shell names other folders (`make clean`
# removes them).
export ROS_LOG_DIR="${ROS_LOG_DIR:-$_fer_root/log/ros}"
export FER_ROS_ENGINE_CACHE="${FER_ROS_ENGINE_CACHE:-$_fer_root/.cache/engines}"
# Fast DDS' default shared-memory segment is smaller than one 640x480 image: use a 16 MB one.
export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$_fer_root/fer_ros/config/fastdds_shm.xml}"
if [ "${1:-}" != "--no-install" ] && [ -f "$_fer_root/install/local_setup.sh" ]; then
  # colcon's script reads variables that may be unset: nounset is off while it runs, then as the caller had it.
  case $- in *u*) _fer_nounset=1; set +u ;; *) _fer_nounset="" ;; esac
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$_fer_root/install" . "$_fer_root/install/local_setup.sh"
  [ -z "$_fer_nounset" ] || set -u
  unset _fer_nounset
fi
unset _fer_root

#!/usr/bin/env bash
# Sets up everything fer_ros needs inside the project tree, idempotently:
#   .venv/       Python virtual environment (Python deps; ROS 2 Jazzy wheels when no system ROS 2 is sourced; the
#                launch stack's wheels where ../shared/ros2-launch or $FER_ROS_LAUNCH_STACK holds them)
#   build/ install/ log/   the colcon workspace of fer_msgs and fer_ros (and composition_interfaces with the launch
#                stack)
# A second run with nothing changed only checks stamps and returns. The stamps name the project's folder and the
# interpreter (PYTHON): in a moved or copied checkout, or with another interpreter, the venv and the build are made
# again. The folder's path must not contain whitespace.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
# colcon's generated setup scripts (install/local_setup.sh, which scripts/env.sh sources) and ament's CMake code do
# not quote the paths they hold: in a folder whose path has a space (or other whitespace) they break, and the
# install space is never sourced. Nothing is made in such a folder.
case "$ROOT" in
  *[[:space:]]*) die "the project's path '$ROOT' contains whitespace, which colcon and ament cannot build in: move the checkout to a path without whitespace and run 'make setup' there" ;;
esac
cd "$ROOT"
VENV="$ROOT/.venv"
STAMPS="$ROOT/.setup-stamps"
PYTHON="${PYTHON:-python3}"
mkdir -p "$STAMPS"

# --- which ROS 2 -------------------------------------------------------------------------------
ROS_MODE="$(bash scripts/ros_mode.sh)"   # system-<distro> when a system ROS 2 is sourced, else wheels-jazzy
if [ "$ROS_MODE" = wheels-jazzy ]; then
  # Packages on the shell's PYTHONPATH would count as installed to pip and to the checks below, and be missing in
  # a shell without it: the venv must hold everything itself. (A system ROS 2 is found through PYTHONPATH: kept.)
  unset PYTHONPATH PYTHONHOME
fi

# --- the ROS 2 launch stack -------------------------------------------------------------------------
# launch, launch_ros, launch_testing and ros2cli come with a ROS 2 install but are not on PyPI. Where a folder with
# them as wheels (and the composition_interfaces message package that launch_ros imports) sits beside the project,
# and no system ROS 2 is sourced, they go into the venv too: `ros2 launch`, `ros2 topic` and the launch tests then
# work. Without that folder nothing of it is installed and those tests skip.
LAUNCH_STACK="${FER_ROS_LAUNCH_STACK:-$ROOT/../shared/ros2-launch}"
LAUNCH_MODE=none
if [ "$ROS_MODE" = wheels-jazzy ] && compgen -G "$LAUNCH_STACK/wheels/*.whl" >/dev/null \
   && [ -f "$LAUNCH_STACK/composition_interfaces/package.xml" ]; then
  LAUNCH_STACK="$(cd "$LAUNCH_STACK" && pwd)"
  LAUNCH_MODE=wheels
fi

# --- the interpreter, before anything is installed for it ----------------------------------------
# (numpy 2.4, which requirements.txt pins, has no wheel for Python 3.10)
"$PYTHON" - 2>/dev/null <<'PY' || die "Python 3.11 to 3.14 is required (found $("$PYTHON" --version 2>/dev/null || echo "no $PYTHON that runs")); set PYTHON=/path/to/python3 (on Ubuntu 22.04: apt install python3.11 python3.11-venv python3.11-dev, then PYTHON=python3.11 make setup)"
import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 14) else 1)
PY

# --- system libraries (OpenCV / MediaPipe need libGL and glib; venv needs python3-venv) ------------
mapfile -t need_apt < <(PYTHON="$PYTHON" bash scripts/system_packages.sh)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" \
    || die "could not install ${need_apt[*]} with apt-get; install them and run 'make setup' again"
fi

# The interpreter a Python runs on (for a venv: the one it was made from), as its real path and version: the venv
# and the colcon build are made again for another one.
python_id() {
  "$1" -c 'import os, platform, sys
print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)), platform.python_version())' 2>/dev/null
}
py_id=$(python_id "$PYTHON") || die "$PYTHON does not run"

# pip install into the venv, without pip's lines about the ROS wheels' data paths that do not exist here; its exit
# status is pip's.
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# The scripts pip installs (pip's own among them) start the python of the place the venv had when they were written:
# in a moved or copied venv they still name the old one. pip writes `#!<python>`, or for a long path `#!/bin/sh`
# and `'''exec' "<python>" "$0" "$@"` on the next line.
venv_scripts_here() {
  local line
  line=$(head -n 1 "$VENV/bin/pip" 2>/dev/null) || return 1
  if [ "$line" = "#!/bin/sh" ]; then
    line=$(sed -n "2s/^'''exec' \"\\([^\"]*\\)\".*/#!\\1/p" "$VENV/bin/pip")
  fi
  case "$line" in "#!$VENV/bin/python"*) return 0 ;; *) return 1 ;; esac
}

# Why the venv cannot be kept; nothing when it can. It is kept only when it works (a run stopped while it was being
# made has no pip), sees the system's packages exactly when a system ROS 2 is used, runs on the interpreter $PYTHON
# names and was made in this folder.
venv_problem() {
  local system_site=false; [ "$ROS_MODE" = wheels-jazzy ] || system_site=true
  if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
    echo "it is incomplete"
  elif ! grep -qx "include-system-site-packages = $system_site" "$VENV/pyvenv.cfg" 2>/dev/null; then
    echo "it was made for another ROS 2 than $ROS_MODE"
  elif [ "$(python_id "$VENV/bin/python")" != "$py_id" ]; then
    echo "it was made with another Python than $py_id"
  elif ! venv_scripts_here; then
    echo "it was made in another folder (its scripts start that folder's python)"
  fi
}

# --- the venv ------------------------------------------------------------------------------------
req_hash=$( { cat requirements.txt requirements-litert.txt; [ "$ROS_MODE" = wheels-jazzy ] && cat requirements-ros.txt; \
              echo "$ROS_MODE"; echo "$ROOT"; echo "$py_id"; \
              cat scripts/setup.sh scripts/ros_mode.sh; } | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMPS/venv" 2>/dev/null)" = "$req_hash" ]; then
  say "venv up to date ($ROS_MODE)"
else
  t0=$(date +%s)
  rm -f "$STAMPS/venv"
  if [ -e "$VENV" ]; then
    problem=$(venv_problem)
    if [ -n "$problem" ]; then
      say "making .venv again: $problem"
      rm -rf "$VENV"
    fi
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    if [ "$ROS_MODE" = wheels-jazzy ]; then
      "$PYTHON" -m venv "$VENV"
    else
      # A sourced system ROS 2 provides rclpy and the message packages: let the venv see them.
      "$PYTHON" -m venv --system-site-packages "$VENV"
    fi
  fi
  say "installing Python dependencies into .venv ($ROS_MODE); this takes a few minutes the first time"
  reqs=(-r requirements.txt)
  [ "$ROS_MODE" = wheels-jazzy ] && reqs+=(-r requirements-ros.txt)
  pip_install "${reqs[@]}" || die "pip install ${reqs[*]} failed (see its output above)"
  # colcon_core: colcon runs on the venv's python (see the build below).
  "$VENV/bin/python" -c 'import torch, onnxruntime, mediapipe, cv2, rosbags, colcon_core' \
    || die "the Python dependencies did not install; see the pip output above"
  # LiteRT is optional: a platform without its wheel still gets a working install. It is resolved together with
  # the files above (installed already), so that it cannot move a pinned package.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}" -r requirements-litert.txt \
    >/dev/null 2>&1 || true
  "$VENV/bin/python" -c 'import ai_edge_litert.interpreter' 2>/dev/null \
    || say "note: LiteRT (ai-edge-litert, requirements-litert.txt) has no wheel here or did not install: fer_node" \
           "follows known faces with MediaPipe's slower graph"
  "$VENV/bin/python" -m pip check >/dev/null 2>&1 || say "note: 'pip check' reports conflicts (see .venv/bin/pip check)"
  if [ "$ROS_MODE" = wheels-jazzy ]; then
    "$VENV/bin/python" "$ROOT/scripts/repair_wheel_cmake.py" "$VENV"
  fi
  rm -f "$STAMPS/colcon" "$STAMPS/launch"   # a new venv needs a new build and the launch stack again
  echo "$req_hash" > "$STAMPS/venv"
  say "venv ready in $(( $(date +%s) - t0 )) s"
fi

# --- the launch stack into the venv --------------------------------------------------------------------
# The stamp covers the folder's place (composition_interfaces is built from it) and what is installed from it, by
# content: the name and sha256 of each wheel and each composition_interfaces file, whatever their dates.
launch_sources() {
  (cd "$LAUNCH_STACK" && { find -L wheels -maxdepth 1 -name '*.whl' -type f -print0
                           find -L composition_interfaces -type f -print0; } | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
# The top-level folders in the venv's site-packages that the installed launch stack's packages put files into (as
# their RECORD files list them; not __pycache__, which top-level modules share).
launch_folders() {
  local site name top
  for site in "$VENV"/lib/python*/site-packages; do
    while read -r name; do cat "$site/$name"-*.dist-info/RECORD 2>/dev/null || true; done < "$STAMPS/launch-packages" \
      | cut -d, -f1 | sed -n 's|/.*||p' | LC_ALL=C sort -u | while read -r top; do
          case "$top" in ..|__pycache__|*.dist-info|*.data) ;; *) echo "$site/$top" ;; esac
        done
  done
}
launch_hash=$( { echo "$LAUNCH_MODE $req_hash"; cat requirements-launch.txt;
                 if [ "$LAUNCH_MODE" = wheels ]; then echo "$LAUNCH_STACK"; launch_sources; fi; } \
               | sha256sum | cut -c1-16) || die "could not read the files of $LAUNCH_STACK"
if [ "$(cat "$STAMPS/launch" 2>/dev/null)" = "$launch_hash" ]; then
  say "launch stack up to date (${LAUNCH_MODE/none/not installed})"
else
  rm -f "$STAMPS/launch"
  if [ "$LAUNCH_MODE" = wheels ]; then
    say "installing the ROS 2 launch stack from $LAUNCH_STACK"
    # Their PyPI dependencies first, then the wheels without dependency resolution: launch_ros names
    # ament_index_python, which the ROS wheels provide under another distribution name.
    pip_install -r requirements-launch.txt || die "pip install -r requirements-launch.txt failed (see its output above)"
    pip_install --no-deps "$LAUNCH_STACK"/wheels/*.whl \
      || die "pip install of the wheels in $LAUNCH_STACK/wheels failed (see its output above)"
    "$VENV/bin/python" -c 'import launch, launch_testing, ros2cli' \
      || die "the launch stack did not install; see the pip output above"
    (cd "$LAUNCH_STACK/wheels" && ls -- *.whl) | sed 's/-.*//' > "$STAMPS/launch-packages"
    # composition_interfaces is built again from the folder as it is (its CMake cache names its source folder).
    rm -rf build/composition_interfaces install/composition_interfaces
  elif [ -s "$STAMPS/launch-packages" ]; then
    # The folder is gone since an earlier setup installed from it: take its packages out again, so the venv is
    # what a machine without it gets. (Their PyPI dependencies stay: lark shares its files with lark-parser,
    # which rosidl needs.)
    say "removing the ROS 2 launch stack installed earlier (its folder is gone)"
    mapfile -t launch_folders < <(launch_folders)
    xargs "$VENV/bin/python" -m pip uninstall -q -y < "$STAMPS/launch-packages"
    # pip leaves the files it did not install (pytest's caches of the modules it rewrote), and with them the folders
    # would still import, as namespace packages: what is left of a folder goes too, unless another distribution
    # installed files into it.
    for folder in "${launch_folders[@]}"; do
      [ -d "$folder" ] || continue
      grep -qs "^${folder##*/}/" "${folder%/*}"/*.dist-info/RECORD || rm -rf "$folder"
    done
    rm -rf build/composition_interfaces install/composition_interfaces "$STAMPS/launch-packages"
  fi
  rm -f "$STAMPS/colcon"   # composition_interfaces joins or leaves the colcon build
  echo "$launch_hash" > "$STAMPS/launch"
fi

# --- the colcon build ------------------------------------------------------------------------------
# Rebuild when the packages' files changed since the last build (sources are symlinked, so plain edits to Python
# modules need no rebuild, but new files, messages, launch and config files do): a file newer than the stamp, or one
# added or removed (the stamp holds a hash of the list of files). Python's and pytest's caches are not package files,
# and a folder whose date changed because one was written into it does not count. build/ and install/ hold
# absolute paths (CMake caches, links into the sources, the venv's python): made in another folder, with another
# Python or for another ROS 2 (.setup-stamps/workspace names those they were made for), they are made from scratch.
package_files() {
  find fer_msgs fer_ros \( -name __pycache__ -o -name .pytest_cache \) -prune -o ! -type d ! -name '*.pyc' "$@" -print
}
files_hash=$(package_files | LC_ALL=C sort | sha256sum | cut -c1-16)
workspace="$ROOT $py_id $ROS_MODE"
changed=1
base_paths=(fer_msgs fer_ros)
[ "$LAUNCH_MODE" = wheels ] && base_paths+=("$LAUNCH_STACK/composition_interfaces")
if [ -f "$STAMPS/colcon" ] && [ "$(cat "$STAMPS/workspace" 2>/dev/null)" = "$workspace" ] \
   && [ -d install/fer_ros ] && [ -d install/fer_msgs ] \
   && { [ "$LAUNCH_MODE" = none ] || [ -d install/composition_interfaces ]; }; then
  if [ "$(cat "$STAMPS/colcon")" = "$files_hash" ] && [ -z "$(package_files -newer "$STAMPS/colcon")" ]; then
    changed=0
  fi
fi
if [ $changed -eq 0 ]; then
  say "colcon workspace up to date"
else
  t0=$(date +%s)
  if [ "$(cat "$STAMPS/workspace" 2>/dev/null)" != "$workspace" ]; then
    rm -f "$STAMPS/workspace"
    if [ -e build ] || [ -e install ]; then
      say "removing build/ and install/: they were made in another folder, with another Python or for another ROS 2"
      rm -rf build install
    fi
  fi
  say "colcon build (fer_msgs, fer_ros$([ "$LAUNCH_MODE" = wheels ] && echo ", composition_interfaces"))"
  # shellcheck disable=SC1091
  . "$ROOT/scripts/env.sh" --no-install
  mkdir -p log; echo "$files_hash" > "$STAMPS/colcon.new"
  # A file gone from the sources (a model replaced, say) leaves a dangling link in the symlinked build and
  # install trees, which colcon then fails to copy: drop such links, and the model folders they leave empty.
  find build install -xtype l -delete 2>/dev/null || true
  find build/fer_ros/models install/fer_ros/share/fer_ros/models -mindepth 1 -type d -empty -delete 2>/dev/null || true
  # colcon runs on the venv's python, never a `colcon` found on PATH (a system one runs on the system's python): the
  # scripts it installs (fer_node, fer-*) start the python colcon runs on.
  "$VENV/bin/python" -m colcon --log-base log build --symlink-install --base-paths "${base_paths[@]}" \
    --event-handlers console_cohesion- summary+ status- \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -Wno-dev >log/colcon-build.txt 2>&1 \
    || { tail -40 log/colcon-build.txt; die "colcon build failed (full log: log/colcon-build.txt)"; }
  echo "$workspace" > "$STAMPS/workspace"
  mv "$STAMPS/colcon.new" "$STAMPS/colcon"
  say "colcon build done in $(( $(date +%s) - t0 )) s"
fi
# The command-line tools (fer-train, fer-eval, fer-replay, fer-make-bag, fer-bench) on the venv's PATH; `ros2 run
# fer_ros <tool>` finds the same scripts in install/fer_ros/lib/fer_ros.
for tool in install/fer_ros/lib/fer_ros/fer-*; do
  [ -e "$tool" ] || continue
  link="$VENV/bin/$(basename "$tool")"
  [ "$(readlink "$link" 2>/dev/null)" = "$PWD/$tool" ] || ln -sfn "$PWD/$tool" "$link"
done

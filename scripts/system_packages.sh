#!/usr/bin/env bash
# Prints the Debian/Ubuntu packages fer_ros needs that this machine lacks, one per line (nothing when all are
# there): the libraries OpenCV and MediaPipe load (libGL, glib, EGL, GLESv2), python3-venv, and the build tools
# colcon calls. Used by setup.sh; PYTHON is the interpreter the venv will be made from.
set -uo pipefail
PYTHON="${PYTHON:-python3}"

# ldconfig lives in /sbin or /usr/sbin, which are not on a Debian user's PATH.
ldconfig_bin=$(PATH="$PATH:/usr/sbin:/sbin" command -v ldconfig || true)
libs=""
[ -n "$ldconfig_bin" ] && libs=$("$ldconfig_bin" -p 2>/dev/null)
has_lib() { grep -q "$1 " <<<"$libs"; }

has_lib 'libGL.so.1' || echo libgl1
has_lib 'libglib-2.0.so.0' || echo libglib2.0-0
has_lib 'libEGL.so.1' || echo libegl1
has_lib 'libGLESv2.so.2' || echo libgles2
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || echo python3-venv
command -v cmake >/dev/null 2>&1 || echo cmake
command -v g++ >/dev/null 2>&1 || echo g++
command -v make >/dev/null 2>&1 || echo make
exit 0

#!/usr/bin/env bash
# Prints the Debian/Ubuntu packages fer_ros needs that this machine lacks, one per line (nothing when all are
# there): the libraries OpenCV and MediaPipe load (libGL, glib, EGL, GLESv2), venv and the development headers
# (Python.h, which the fer_msgs build compiles against) of the interpreter the venv is made from, and the build tools
# colcon calls. Used by setup.sh; PYTHON is the interpreter the venv will be made from.
set -uo pipefail
PYTHON="${PYTHON:-python3}"

# ldconfig lives in /sbin or /usr/sbin, which are not on a Debian user's PATH.
ldconfig_bin=$(PATH="$PATH:/usr/sbin:/sbin" command -v ldconfig || true)
libs=""
[ -n "$ldconfig_bin" ] && libs=$("$ldconfig_bin" -p 2>/dev/null)
has_lib() { grep -q "$1 " <<<"$libs"; }

# The interpreter's X.Y, and Debian's default python3's: python3-venv serves the default one only, another one
# (python3.11 on Ubuntu 22.04, say) needs python3.X-venv. The headers are python3.X-dev either way.
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
py_version=$(version_of "$PYTHON")
default_version=$(version_of /usr/bin/python3)
venv_package=python3-venv
[ -n "$py_version" ] && [ "$py_version" != "$default_version" ] && venv_package="python$py_version-venv"
py_include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)

has_lib 'libGL.so.1' || echo libgl1
has_lib 'libglib-2.0.so.0' || echo libglib2.0-0
has_lib 'libEGL.so.1' || echo libegl1
has_lib 'libGLESv2.so.2' || echo libgles2
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || echo "$venv_package"
[ -z "$py_version" ] || [ -f "$py_include/Python.h" ] || echo "python$py_version-dev"
command -v cmake >/dev/null 2>&1 || echo cmake
command -v g++ >/dev/null 2>&1 || echo g++
command -v make >/dev/null 2>&1 || echo make
exit 0

"""Repair the CMake exports of the ROS 2 PyPI wheels.

The wheels install `*_rosidl_generator_pyExport.cmake` files that name the include directories of the
machine the wheels were built on (`/opt/python/cp3XX-cp3XX/include/python3.XX` and its numpy). CMake
refuses to configure a package that depends on them (such as fer_msgs) until those paths name this
Python's and this numpy's include directories. Usage: python repair_wheel_cmake.py VENV
"""
import pathlib
import re
import sys
import sysconfig

import numpy


def main(venv: str) -> int:
    share = pathlib.Path(venv) / "share"
    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    pattern = re.compile(r'INTERFACE_INCLUDE_DIRECTORIES "([^"]*)"')
    fixed = 0
    for path in sorted(share.glob("*/cmake/*_rosidl_generator_pyExport.cmake")):
        text = path.read_text()
        match = pattern.search(text)
        if not match or "/opt/python/" not in match.group(1):
            continue
        dirs = []
        for d in match.group(1).split(";"):
            if d.startswith("/opt/python/"):
                d = np_inc if "numpy" in d else py_inc
            dirs.append(d)
        path.write_text(text[: match.start(1)] + ";".join(dirs) + text[match.end(1):])
        fixed += 1
    print(f"[setup] repaired {fixed} rosidl CMake export file(s) of the ROS 2 wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

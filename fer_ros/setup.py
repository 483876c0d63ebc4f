import os
from glob import glob

from setuptools import find_packages, setup

package_name = "fer_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
    ] + [
        # models/ holds one folder per model; install each folder as is.
        (os.path.join("share", package_name, root), [os.path.join(root, f) for f in files])
        for root, _, files in os.walk("models") if files
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="fer_ros maintainers",
    maintainer_email="maintainers@users.noreply.b-seed-f4ecdd3e.example",
    description="Facial expression recognition (3DAGN) for ROS 2: tracks faces and publishes their emotions.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fer_node = fer_ros.ros.node:main",
            "train = fer_ros.training.train:main",
            "fer-train = fer_ros.training.train:main",
            "eval = fer_ros.tools.evaluate:main",
            "fer-eval = fer_ros.tools.evaluate:main",
            "replay = fer_ros.tools.replay:main",
            "fer-replay = fer_ros.tools.replay:main",
            "make_bag = fer_ros.tools.make_bag:main",
            "fer-make-bag = fer_ros.tools.make_bag:main",
            "quantize = fer_ros.training.quantize:main",
            "fer-quantize = fer_ros.training.quantize:main",
            "bench = fer_ros.tools.bench:main",
            "fer-bench = fer_ros.tools.bench:main",
            "publish_bag = fer_ros.ros.bag_publisher:main",
            "fer-publish-bag = fer_ros.ros.bag_publisher:main",
            "soak = fer_ros.ros.soak:main",
            "fer-soak = fer_ros.ros.soak:main",
        ],
    },
)

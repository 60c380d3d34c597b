"""ament_python package: `colcon build` on a robot, `pip install -e .` in the project's venv."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'faster_deployment_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
    ],
    install_requires=['setuptools', 'numpy'],
    zip_safe=True,
    maintainer='faster_deployment_ros developers',
    maintainer_email='dev@faster-deployment-ros.invalid',
    description='Low-latency camera perception for ROS 2.',
    license='Apache-2.0',
    python_requires='>=3.10',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'detector_node = faster_deployment_ros.ros.detector_node:main',
            'depth_node = faster_deployment_ros.ros.depth_node:main',
            'segmentation_node = faster_deployment_ros.ros.segmentation_node:main',
            'fdr-bag = faster_deployment_ros.tools.bag_cli:main',
            'fdr-convert = faster_deployment_ros.tools.convert:main',
            'fdr-benchmark = faster_deployment_ros.tools.benchmark:main',
        ],
    },
)

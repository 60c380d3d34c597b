"""Depth node with a parameter YAML, the image topic remapped, middleware for large frames.

Usage:
  ros2 launch faster_deployment_ros depth.launch.py \
      params_file:=/path/params.yaml model_path:=/path/depth_anything_v2_vits.onnx \
      image:=/camera/image_raw
"""
from faster_deployment_ros.ros.launch_common import launch_for


def generate_launch_description():
    return launch_for('depth_node', 'depth', 'depth_anything_v2_onnxruntime.yaml')

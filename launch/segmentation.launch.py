"""Segmentation node with a parameter YAML, the image topic remapped, middleware for large frames.

Usage:
  ros2 launch faster_deployment_ros segmentation.launch.py \
      params_file:=/path/params.yaml model_path:=/path/lraspp_mobilenet_v3_large.onnx \
      image:=/camera/image_raw
"""
from faster_deployment_ros.ros.launch_common import launch_for


def generate_launch_description():
    return launch_for('segmentation_node', 'segmentation',
                      'lraspp_segmentation_onnxruntime.yaml')

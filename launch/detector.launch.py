"""Detector node with a parameter YAML, the image topic remapped, middleware for large frames.

Usage:
  ros2 launch faster_deployment_ros detector.launch.py \
      params_file:=/path/params.yaml model_path:=/path/model.onnx image:=/camera/image_raw
Several cameras, one model (results in /front/detections, /rear/detections):
  ros2 launch faster_deployment_ros detector.launch.py \
      model_path:=/path/model.onnx inputs:="[/front/image_raw, /rear/image_raw]"
"""
from faster_deployment_ros.ros.launch_common import launch_for


def generate_launch_description():
    return launch_for('detector_node', 'detector', 'yolox_nano_onnxruntime.yaml')

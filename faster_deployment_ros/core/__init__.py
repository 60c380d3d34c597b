"""ROS-free core: pipeline, image codecs and shared image/box operations."""

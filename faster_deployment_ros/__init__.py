"""Low-latency camera perception for ROS 2.

`core`, `backends`, `models` and `tools` import without rclpy; `ros` is the thin ROS 2 layer.
"""

__version__ = '0.1.0'

"""Helpers of the tests, imported as `from support import node_harness` or `from support.X import`.

pytest puts test/ on sys.path (test/ has no __init__.py: the rootdir conftest scheme), so this
package is `support`. conftest.py holds only fixtures and hooks and imports from here; nothing
imports conftest as a module.

shared_data   ROOT, CACHE, the shared test data (shared_file) and the CI rule for missing data
ros_nodes     bounded destruction of test nodes (destroy_node)
node_harness  the node under test and a peer in one real rclpy executor; console scripts
golden        the built test models, their golden results and frames
edge_assets   converted ncnn / rknn models and output comparisons
bag_diff      rosbag writers for the bag comparison tests
fault_backend a backend that raises, hangs or is slow on purpose (backend `fault`)
tiny_onnx     small ONNX graphs built in memory
yolox_reference  a plain YOLOX reference the adapter is checked against
trt_standins  strict stand-ins of the `tensorrt` module (8.6, 10.x, 11.x)
tensorrt_assets  device identity, ModelOpt interpreter and calibration frames for TensorRT tests
cdr           raw-publish bytes against rclpy's serialisation and a real subscriber
"""

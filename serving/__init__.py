"""Serving the pushed SavedModel over gRPC and REST, and clients of it."""
from cns_vaegan.components import quiet_start

# The CLI and the server start without TensorFlow's C++ start-up lines.
quiet_start.import_tensorflow()

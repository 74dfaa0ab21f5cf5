"""The TFX pipeline definition, its defaults, and the local runner."""
from cns_vaegan.components import quiet_start

# The runners start without TensorFlow's C++ start-up lines (the local runner logs them).
quiet_start.import_tensorflow()

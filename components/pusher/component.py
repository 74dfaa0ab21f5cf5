"""VersionedPusher: TFX's standard Pusher with an executor that never skips a blessed model.

TFX's Pusher names a filesystem push by the Unix time in seconds and, when that folder
already exists, skips the copy yet still marks the model pushed: two pipelines (or two
quick runs) blessing a model within one second leave the second one unserved, silently.
"""
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from cns_vaegan.components.pusher import executor


class VersionedPusher(tfx.components.Pusher):
  """tfx.components.Pusher whose pushes always get a version above every existing one."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

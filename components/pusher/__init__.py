"""VersionedPusher: TFX's Pusher, with a new version for every push, even in the same second."""
from cns_vaegan.components.pusher.component import VersionedPusher

__all__ = ['VersionedPusher']

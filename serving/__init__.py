"""Serving the pushed SavedModel over gRPC and REST, and clients of it."""

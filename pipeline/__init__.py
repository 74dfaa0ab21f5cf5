"""The TFX pipeline definition, its defaults, and the local runner."""

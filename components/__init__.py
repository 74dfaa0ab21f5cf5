"""TFX components of the pipeline, in data-flow order, and the helpers they share."""

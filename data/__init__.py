"""The built-in CNS glyph dataset: rendering PNGs from a font, and glyph file names."""

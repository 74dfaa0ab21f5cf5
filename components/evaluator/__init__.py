"""GlyphEvaluator: reconstruction and sample quality of a trained model, and its blessing."""
from cns_vaegan.components.evaluator.component import GlyphEvaluator

__all__ = ['GlyphEvaluator']

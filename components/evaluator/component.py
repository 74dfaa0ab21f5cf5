"""GlyphEvaluator: TFX's TFMA Evaluator is made for labelled predictions; this model
needs its own. It takes the Examples, the candidate Model and (optionally) the latest
blessed Model from a Resolver, and emits the standard ModelEvaluation and ModelBlessing
artifacts, so the standard Pusher pushes only what it blessed.
"""
import json
from typing import Dict, Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from cns_vaegan.components.evaluator import blessing_rules, executor


class GlyphEvaluatorSpec(types.ComponentSpec):
  PARAMETERS = {
      'thresholds': ExecutionParameter(type=str),            # JSON, see blessing_rules
      'regression_tolerance': ExecutionParameter(type=float),
      'max_examples': ExecutionParameter(type=int),
      'num_samples': ExecutionParameter(type=int),
      'seed': ExecutionParameter(type=int),
      'arithmetic_tuples': ExecutionParameter(type=str),     # JSON list of [A, B, C]
  }
  INPUTS = {
      executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
  }
  OUTPUTS = {
      executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
      executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


class GlyphEvaluator(base_component.BaseComponent):
  """Reconstruction and sample quality on the eval split; blesses or refuses the model."""

  SPEC_CLASS = GlyphEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               baseline_model: Optional[types.BaseChannel] = None,
               thresholds: Optional[Dict[str, Dict[str, float]]] = None,
               regression_tolerance: float = blessing_rules.DEFAULT_REGRESSION_TOLERANCE,
               max_examples: int = 2048, num_samples: int = 1024, seed: int = 0,
               arithmetic_tuples: Sequence[Sequence[str]] = ()):
    """Args:
      thresholds: {metric path: {"min": x} or {"max": y}}; default blessing_rules.DEFAULT_THRESHOLDS.
      regression_tolerance: how much worse than the baseline a metric may be (relative).
      max_examples: eval glyphs measured (the first ones of the eval split).
      num_samples: samples (the `sample` signature's) compared with the eval glyphs (capped at max_examples).
      arithmetic_tuples: [A, B, C] characters for the a·(A − B + C) figures.
    """
    spec = GlyphEvaluatorSpec(
        examples=examples, model=model, baseline_model=baseline_model,
        thresholds=json.dumps(thresholds or blessing_rules.DEFAULT_THRESHOLDS, sort_keys=True),
        regression_tolerance=regression_tolerance, max_examples=max_examples,
        num_samples=num_samples, seed=seed,
        arithmetic_tuples=json.dumps([list(t) for t in arithmetic_tuples], ensure_ascii=False),
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing))
    super().__init__(spec=spec)

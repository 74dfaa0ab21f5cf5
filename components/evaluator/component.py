"""GlyphEvaluator: TFX's TFMA Evaluator is made for labelled predictions; this model
needs its own. It takes the Examples, the candidate Model and (optionally) the latest
blessed Model from a Resolver, and emits the standard ModelEvaluation and ModelBlessing
artifacts, so the standard Pusher pushes only what it blessed.
"""
import json
from typing import Any, Dict, Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from cns_vaegan.components.evaluator import blessing_rules, executor, paired_comparison
from cns_vaegan.components.evaluator import retrain_noise as retrain_noise_file


class GlyphEvaluatorSpec(types.ComponentSpec):
  PARAMETERS = {
      'thresholds': ExecutionParameter(type=str),            # JSON, see blessing_rules
      'regression': ExecutionParameter(type=str),            # JSON: retrain_noise, false_refusal_rate
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
               false_refusal_rate: float = blessing_rules.DEFAULT_FALSE_REFUSAL_RATE,
               retrain_noise: Optional[Dict[str, Any]] = None,
               bootstrap_replicates: int = paired_comparison.DEFAULT_REPLICATES,
               max_examples: int = 2048, num_samples: int = 1024, seed: int = 0,
               arithmetic_tuples: Sequence[Sequence[str]] = ()):
    """Args:
      thresholds: {metric path: bounds} merged over blessing_rules.DEFAULT_THRESHOLDS (a path
        mapped to None drops that threshold).
      false_refusal_rate: the chance that a retrain of the same code on the same data is refused
        as a regression (blessing_rules' docstring has the rule).
      retrain_noise: the spread of each metric across retrains (benchmarks/gate_noise.py writes
        it); default: retrain_noise.DEFAULT_FILE, measured on the built-in data.
      bootstrap_replicates: replicates of the estimator-noise bootstrap (paired_comparison).
      max_examples: eval glyphs measured (the first ones of the eval split).
      num_samples: samples (the `sample` signature's) compared with the eval glyphs (capped at max_examples).
      arithmetic_tuples: [A, B, C] characters for the a·(A − B + C) figures.
    """
    regression = {'false_refusal_rate': false_refusal_rate, 'bootstrap_replicates': bootstrap_replicates,
                  'retrain_noise': retrain_noise or retrain_noise_file.load()}
    spec = GlyphEvaluatorSpec(
        examples=examples, model=model, baseline_model=baseline_model,
        thresholds=json.dumps(blessing_rules.merged_thresholds(thresholds), sort_keys=True),
        regression=json.dumps(regression, sort_keys=True), max_examples=max_examples,
        num_samples=num_samples, seed=seed,
        arithmetic_tuples=json.dumps([list(t) for t in arithmetic_tuples], ensure_ascii=False),
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing))
    super().__init__(spec=spec)

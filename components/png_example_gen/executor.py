"""Beam executor of PngExampleGen.

Built on TFX's BaseExampleGenExecutor, which already splits records into train/eval
by a hash of a feature (here the character) and writes gzipped TFRecords into the
Examples artifact. This executor only says how PNG files become examples, and keeps
an ingestion report: every file that could not become an example is listed with the
reason in `ingestion_report.json` at the root of the Examples artifact, and counted
in the artifact's custom properties. A run that yields no example at all fails.
"""
import json
import os
from typing import Any, Dict, Iterable, List

import apache_beam as beam
from absl import logging
from apache_beam.io import fileio
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.dsl.io import fileio as tfx_fileio
from tfx.types import artifact_utils, standard_component_specs

from cns_vaegan.components import glyph_examples

IMAGE_SIZE_KEY = 'image_size'
IMAGE_CHANNELS_KEY = 'image_channels'
MAX_IMAGE_SIDE_KEY = 'max_image_side'
REPORT_FILE_NAME = 'ingestion_report.json'
_REPORT_URI_KEY = '_ingestion_report_uri'  # private: set by Do, read by the PTransform
_BAD = 'bad'


def _decode(readable_file, size: int, channels: int, max_side: int):
  """One matched file -> Glyph (main output) or {'file', 'reason'} (tagged 'bad').

  Whatever a file does to the reader or decoder, it is listed, never raised: one file must
  not fail the run.
  """
  path = readable_file.metadata.path
  try:
    data = readable_file.read()
  except Exception as error:  # pylint: disable=broad-except  (unreadable from the filesystem)
    yield beam.pvalue.TaggedOutput(_BAD, {'file': path, 'reason': (
        f'{os.path.basename(path)}: cannot read file ({type(error).__name__}: {error})')})
    return
  try:
    glyph = glyph_examples.decode_glyph(path, data, size, channels, max_side)
  except glyph_examples.BadGlyphFile as error:
    yield beam.pvalue.TaggedOutput(_BAD, {'file': path, 'reason': str(error)})
  except Exception as error:  # pylint: disable=broad-except  (a failure decode_glyph did not foresee)
    yield beam.pvalue.TaggedOutput(_BAD, {'file': path, 'reason': (
        f'{os.path.basename(path)}: {type(error).__name__}: {error}')})
  else:
    yield glyph


def _keep_first_of_duplicates(keyed: tuple):
  """For one character, keep the glyph with the smallest file name; report the rest."""
  character, glyphs = keyed
  glyphs = sorted(glyphs, key=lambda g: g.source_file)
  kept = glyphs[0]
  yield kept
  for duplicate in glyphs[1:]:
    yield beam.pvalue.TaggedOutput(_BAD, {
        'file': duplicate.source_file,
        'reason': (f'{os.path.basename(duplicate.source_file)}: duplicate of character '
                   f'{character} (U+{ord(character):04X}); kept {os.path.basename(kept.source_file)}'),
    })


def _write_report(_, report_uri: str, pattern: str, num_examples: int, bad: List[dict]):
  bad = sorted(bad, key=lambda b: b['file'])
  report = {
      'input_pattern': pattern,
      'num_examples': num_examples,
      'num_bad_files': len(bad),
      'bad_files': bad,
  }
  with tfx_fileio.open(report_uri, 'w') as f:
    f.write(json.dumps(report, ensure_ascii=False, indent=2))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _PngToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                  split_pattern: str) -> beam.pvalue.PCollection:
  """Reads PNG files matching split_pattern under input_base into tf.train.Examples."""
  pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  size = exec_properties[IMAGE_SIZE_KEY]
  channels = exec_properties[IMAGE_CHANNELS_KEY]
  max_side = exec_properties.get(MAX_IMAGE_SIDE_KEY) or glyph_examples.MAX_IMAGE_SIDE

  decoded = (
      pipeline
      | 'MatchFiles' >> fileio.MatchFiles(pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
      | 'ReadMatches' >> fileio.ReadMatches()  # skips directories
      | 'Decode' >> beam.FlatMap(_decode, size, channels, max_side).with_outputs(_BAD, main='glyphs'))
  unique = (
      decoded.glyphs
      | 'KeyByCharacter' >> beam.Map(lambda glyph: (glyph.character, glyph))
      | 'GroupByCharacter' >> beam.GroupByKey()
      | 'DropDuplicates' >> beam.FlatMap(_keep_first_of_duplicates).with_outputs(_BAD, main='glyphs'))
  examples = unique.glyphs | 'ToExample' >> beam.Map(glyph_examples.to_example)

  bad_files = (decoded[_BAD], unique[_BAD]) | 'AllBadFiles' >> beam.Flatten()
  num_examples = examples | 'CountExamples' >> beam.combiners.Count.Globally()
  bad_list = bad_files | 'ListBadFiles' >> beam.combiners.ToList()
  _ = (
      pipeline
      | 'ReportTrigger' >> beam.Create([None])
      | 'WriteReport' >> beam.Map(
          _write_report, exec_properties[_REPORT_URI_KEY], pattern,
          num_examples=beam.pvalue.AsSingleton(num_examples),
          bad=beam.pvalue.AsSingleton(bad_list)))
  return examples


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """TFX ExampleGen executor for folders of glyph PNGs."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _PngToExample

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
    report_uri = os.path.join(examples.uri, REPORT_FILE_NAME)
    exec_properties = dict(exec_properties, **{_REPORT_URI_KEY: report_uri})
    super().Do(input_dict, output_dict, exec_properties)

    with tfx_fileio.open(report_uri) as f:
      report = json.loads(f.read())
    examples.set_int_custom_property('num_examples', report['num_examples'])
    examples.set_int_custom_property('num_bad_files', report['num_bad_files'])
    for bad in report['bad_files']:
      logging.warning('PngExampleGen skipped %s', bad['reason'])
    if report['num_examples'] == 0:
      reasons = _summarize_reasons(b['reason'] for b in report['bad_files'])
      raise ValueError(
          f'PngExampleGen: no usable glyph PNG under {report["input_pattern"]} '
          f'({report["num_bad_files"]} bad files{": " + reasons if reasons else ""}); '
          f'see {report_uri}')
    logging.info('PngExampleGen wrote %d examples; %d bad files listed in %s',
                 report['num_examples'], report['num_bad_files'], report_uri)


def _summarize_reasons(reasons: Iterable[str], limit: int = 3) -> str:
  reasons = list(reasons)
  shown = '; '.join(reasons[:limit])
  return shown + (f'; … {len(reasons) - limit} more' if len(reasons) > limit else '')

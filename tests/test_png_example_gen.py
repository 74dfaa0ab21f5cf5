"""PngExampleGen's executor on a folder of real glyphs mixed with every kind of bad file."""
import glob
import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import Phase, assume, given, settings, strategies as st
from PIL import Image
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from bad_glyph_files import png_bomb, png_with_header, write_bad_glyph_files
from conftest import TEST_CHARACTERS
from cns_vaegan.components import glyph_examples
from cns_vaegan.components.png_example_gen import component, executor

SIZE = 16


def run_executor(input_base: str, output_uri: str, eval_percent: int = 30):
  examples = standard_artifacts.Examples()
  examples.uri = output_uri
  exec_properties = {
      'input_base': input_base,
      'input_config': proto_utils.proto_to_json(example_gen_pb2.Input(
          splits=[example_gen_pb2.Input.Split(name='glyphs', pattern='*')])),
      'output_config': proto_utils.proto_to_json(component.split_config(eval_percent)),
      'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
      'output_file_format': example_gen_pb2.FORMAT_TFRECORDS_GZIP,
      executor.IMAGE_SIZE_KEY: SIZE,
      executor.IMAGE_CHANNELS_KEY: 1,
  }
  executor.Executor().Do({}, {'examples': [examples]}, exec_properties)
  return examples


def read_split(uri: str, split: str) -> dict:
  """{character: parsed features} of one split."""
  files = glob.glob(os.path.join(uri, f'Split-{split}', '*.gz'))
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').map(
      lambda record: tf.io.parse_single_example(record, glyph_examples.feature_spec(SIZE, 1)))
  return {row['character'].numpy().decode(): row for row in dataset}


@pytest.fixture(scope='module')
def mixed_run(glyph_dir, tmp_path_factory):
  """One executor run over every good glyph plus every kind of bad file and a duplicate."""
  folder = tmp_path_factory.mktemp('mixed')
  shutil.copytree(glyph_dir, folder, dirs_exist_ok=True)
  expected_bad = write_bad_glyph_files(folder)
  shutil.copy(folder / 'U20320.png', folder / 'U+4F60.png')  # 你 twice
  os.mkdir(folder / 'a_subfolder')  # folders are not files: neither examples nor bad files
  output = str(tmp_path_factory.mktemp('out'))
  examples = run_executor(str(folder), output)
  return folder, expected_bad, examples


def test_every_good_glyph_arrives_once_with_its_exact_pixels(mixed_run):
  folder, expected_bad, examples = mixed_run
  rows = {**read_split(examples.uri, 'train'), **read_split(examples.uri, 'eval')}
  good_files = [f for f in os.listdir(folder)
                if f.endswith('.png') and f not in expected_bad and f != 'U20320.png']
  assert len(rows) == len(good_files) == len(TEST_CHARACTERS) - (len(expected_bad) - 1)  # notes.txt replaces none
  for name in good_files:
    row = next(r for r in rows.values() if os.path.basename(r['source_file'].numpy().decode()) == name)
    written = np.asarray(Image.open(folder / name))
    np.testing.assert_array_equal(glyph_examples.denormalize(row['image'].numpy())[..., 0], written)
    assert chr(row['code_point'].numpy()) == row['character'].numpy().decode()
  assert examples.get_int_custom_property('num_examples') == len(rows)


def test_every_bad_file_is_counted_and_listed_with_its_reason(mixed_run):
  _, expected_bad, examples = mixed_run
  report = json.load(open(os.path.join(examples.uri, executor.REPORT_FILE_NAME), encoding='utf-8'))
  listed = {os.path.basename(b['file']): b['reason'] for b in report['bad_files']}
  assert set(listed) == set(expected_bad) | {'U20320.png'}
  for name, reason in expected_bad.items():
    assert reason in listed[name]
  assert 'duplicate of character 你' in listed['U20320.png'] and 'kept U+4F60.png' in listed['U20320.png']
  assert report['num_bad_files'] == len(expected_bad) + 1 == examples.get_int_custom_property(
      'num_bad_files')


def test_splits_are_disjoint_and_decided_by_the_character_alone(mixed_run, glyph_dir, tmp_path):
  _, _, examples = mixed_run
  train, eval_ = read_split(examples.uri, 'train'), read_split(examples.uri, 'eval')
  assert train and eval_ and not set(train) & set(eval_)
  # A different folder holding some of the same characters puts each in the same split.
  subset = tmp_path / 'subset'
  subset.mkdir()
  for name in sorted(os.listdir(glyph_dir))[::3]:
    shutil.copy(os.path.join(glyph_dir, name), subset / name)
  again = run_executor(str(subset), str(tmp_path / 'out'))
  for character in read_split(again.uri, 'train'):
    assert character not in eval_
  for character in read_split(again.uri, 'eval'):
    assert character not in train


def test_an_empty_folder_is_a_clear_error(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match=r'no usable glyph PNG under .*empty/\*'):
    run_executor(str(tmp_path / 'empty'), str(tmp_path / 'out'))


def test_a_folder_of_only_bad_files_is_a_clear_error_that_says_why(tmp_path):
  write_bad_glyph_files(tmp_path / 'bad')
  with pytest.raises(ValueError, match=r'no usable glyph PNG .*8 bad files: .*'):
    run_executor(str(tmp_path / 'bad'), str(tmp_path / 'out'))


def _glyph_png() -> bytes:
  buffer = io.BytesIO()
  Image.new('L', (16, 16), 255).save(buffer, format='PNG')
  return buffer.getvalue()


@st.composite
def bad_files(draw):
  """(kind, file name, content) of a file that can never become an example."""
  kind = draw(st.sampled_from(['random bytes', 'truncated', 'oversized header', 'bomb']))
  if kind == 'random bytes':
    data = draw(st.binary(max_size=300))
  elif kind == 'truncated':  # cut anywhere before IEND (PIL needs no IEND: that would be good)
    good = _glyph_png()
    data = good[:draw(st.integers(0, len(good) - 13))]
  elif kind == 'oversized header':
    data = png_with_header(draw(st.integers(2049, 2 ** 32 - 1)), draw(st.integers(0, 2 ** 32 - 1)),
                           draw(st.binary(max_size=100)))
  else:
    data = png_bomb(16000)
  character = st.characters(blacklist_characters='/\0', blacklist_categories=('Cs',))
  name = draw(st.one_of(
      st.text(character, min_size=1, max_size=40).filter(lambda n: n not in ('.', '..')),
      st.builds(lambda c, ext: f'U{ord(c)}{ext}', character, st.sampled_from(['.png', '', '.PNG'])),
      st.builds(lambda c: f'U+{ord(c):04X}.png', character),  # also the good glyphs' characters
      st.builds(lambda c: f'{c}.png', character)))
  assume(not _decodes(data))  # e.g. a cut after the last pixel byte, or lucky random bytes
  return kind, name, data


def _decodes(data: bytes) -> bool:
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
    return True
  except Exception:  # pylint: disable=broad-except  (any failure: not decodable)
    return False


# Each example is a whole executor run (~4 s), so few, and no shrinking: derandomized, a
# failure repeats exactly.
@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate])
@given(bad=st.lists(bad_files(), min_size=1, max_size=6, unique_by=lambda b: b[1].casefold()))
def test_bad_files_of_any_content_and_name_among_good_glyphs_never_lose_one_or_stop_the_run(
    glyph_dir, tmp_path_factory, bad):
  good = sorted(os.listdir(glyph_dir))[:8]
  bad = [(name, data) for _, name, data in bad if name not in good]
  folder = tmp_path_factory.mktemp('hostile')
  for name in good:
    shutil.copy(os.path.join(glyph_dir, name), folder / name)
  for name, data in bad:
    (folder / name).write_bytes(data)
  examples = run_executor(str(folder), str(tmp_path_factory.mktemp('out')))
  rows = {**read_split(examples.uri, 'train'), **read_split(examples.uri, 'eval')}
  assert sorted(os.path.basename(r['source_file'].numpy().decode()) for r in rows.values()) == good
  report = json.load(open(os.path.join(examples.uri, executor.REPORT_FILE_NAME), encoding='utf-8'))
  assert sorted(os.path.basename(b['file']) for b in report['bad_files']) == sorted(n for n, _ in bad)
  assert all(b['reason'].startswith(os.path.basename(b['file'])) for b in report['bad_files'])

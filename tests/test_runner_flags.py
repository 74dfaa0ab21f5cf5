"""The runners' flags, checked before anything runs: --hparam parsed by the training
setting's type (a bool from 'False' is False), unknown keys and bad values refused naming
the valid keys, and the numeric flags kept in their ranges."""
import pytest

from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.pipeline import local_runner


def parse(*flags):
  return local_runner.parse_args(['--profile', 'cpu', *flags])


def refused(capsys, *flags) -> str:
  """What the runner says when it refuses `flags` (argparse's usage error, exit status 2)."""
  with pytest.raises(SystemExit) as exit_info:
    parse(*flags)
  assert exit_info.value.code == 2
  return capsys.readouterr().err


@pytest.mark.parametrize('text, key, value', [
    ('latent_tanh=False', 'latent_tanh', False), ('latent_tanh=false', 'latent_tanh', False),
    ('latent_tanh=0', 'latent_tanh', False), ('mixed_precision=TRUE', 'mixed_precision', True),
    ('equilibrium_gating=off', 'equilibrium_gating', False), ('equilibrium_gating=1', 'equilibrium_gating', True),
    ('gamma=0.01', 'gamma', 0.01), ('gamma=1', 'gamma', 1.0), ('learning_rate=1e-4', 'learning_rate', 1e-4),
    ('batch_size=32', 'batch_size', 32), ('update_schedule=sequential', 'update_schedule', 'sequential'),
])
def test_hparam_values_take_the_settings_type(text, key, value):
  setting = parse('--hparam', text).training_values[key]
  assert setting == value and type(setting) is type(value)  # pylint: disable=unidiomatic-typecheck


@pytest.mark.parametrize('text, says', [
    ('gamma=abc', "training setting gamma is a float (a finite number), got 'abc'"),
    ('gamma=nan', "training setting gamma is a float (a finite number), got 'nan'"),
    ('batch_size=1.5', "training setting batch_size is a int (a whole number), got '1.5'"),
    ('latent_tanh=maybe', "training setting latent_tanh is a bool (true/1/yes/on/false/0/no/off), got 'maybe'"),
    ('no_such_setting=1', "unknown training setting 'no_such_setting'"),
    ('gamma', "expected KEY=VALUE, got 'gamma'"),
])
def test_a_bad_hparam_is_refused_naming_its_type_and_the_valid_keys(capsys, text, says):
  error = refused(capsys, '--hparam', text)
  assert f'argument --hparam: {says}' in error, error
  assert 'valid keys: batch_size (int), learning_rate (float), ' in error and 'latent_tanh (bool)' in error


def test_a_setting_out_of_its_range_is_refused_before_anything_runs(capsys):
  assert "--hparam: training: dis_l_layer must be 1..4, got 7" in refused(capsys, '--hparam', 'dis_l_layer=7')
  with pytest.raises(ValueError, match="training: gamma must be a float, got 'abc'"):
    TrainingConfig.from_dict({'gamma': 'abc'})  # the Trainer's custom_config, checked the same way
  with pytest.raises(ValueError, match="training: latent_tanh must be a bool, got 'False'"):
    TrainingConfig(latent_tanh='False')


@pytest.mark.parametrize('flag, value, says', [
    ('--train-steps', '0', 'must be 1 or more, got 0'), ('--train-steps', '-3', 'must be 1 or more, got -3'),
    ('--train-steps', 'many', "expected a whole number, got 'many'"),
    ('--eval-examples', '0', 'must be 1 or more, got 0'),
    ('--eval-percent', '0', 'must be from 1 to 99, got 0'), ('--eval-percent', '100', 'must be from 1 to 99, got 100'),
    ('--cpu-replicas', '-1', 'must be 0 or more, got -1'),
])
def test_numeric_flags_out_of_range_are_refused(capsys, flag, value, says):
  assert f'argument {flag}: {says}' in refused(capsys, flag, value)


def test_numeric_flags_at_their_bounds_are_taken():
  args = parse('--train-steps', '1', '--eval-examples', '1', '--eval-percent', '99', '--cpu-replicas', '0')
  assert (args.train_steps, args.eval_examples, args.eval_percent) == (1, 1, 99)
  assert 'cpu_replicas' not in args.training_values
  assert parse('--eval-percent', '1').eval_percent == 1

"""The README's quickstart reaches the accuracy README states."""

from bird_jax import train
from configs import quickstart


def test_quickstart_reaches_stated_accuracy(tmp_path, optimized_compiles):
    config = quickstart.get_config()
    config.log_input_grid = False
    config.eval_every_steps = 10_000  # once, at the end: the accuracy is what is tested
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["accuracy"] >= 0.95  # README: about 99% on the validation split
    assert results["macro_f1"] >= 0.95

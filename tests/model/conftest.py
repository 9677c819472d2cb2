import pytest

from powerflow.config.sections import ExactCheckConfig


@pytest.fixture
def small_cfg():
    """A few-step configuration on the enumerable world (fast: well under a second a step)."""
    return ExactCheckConfig(steps=4, num_generations=16)

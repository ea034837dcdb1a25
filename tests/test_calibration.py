import pytest
import torch

from srgnn.calibration import fit_temperature
from srgnn.disagreement import expected_calibration_error


def _overconfident(n: int = 4000, classes: int = 4, true_temperature: float = 2.5):
    """Labels drawn from softmax(z) while the model reports z * true_temperature."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(n, classes, generator=generator) * 1.5
    labels = torch.multinomial(z.softmax(1), 1, generator=generator).view(-1)
    return z * true_temperature, labels


def test_fit_temperature_recovers_the_planted_temperature():
    logits, labels = _overconfident()
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(logits.softmax(1), labels)
    after = expected_calibration_error((logits / temperature).softmax(1), labels)
    assert after < 0.03 < before


def test_fit_temperature_keeps_calibrated_logits_near_one():
    logits, labels = _overconfident(true_temperature=1.0)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("logits, labels, match", [
    (torch.randn(5, 3).softmax(1), torch.zeros(5, dtype=torch.long), "takes logits"),
    (torch.randn(5, 3), torch.zeros(4, dtype=torch.long), "logits \\[n, C\\] and labels \\[n\\]"),
    (torch.randn(5, 3), torch.full((5,), 3), "labels must lie in"),
    (torch.full((5, 3), float("nan")), torch.zeros(5, dtype=torch.long), "NaN"),
])
def test_bad_inputs_are_refused(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, labels)

import copy

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from srgnn import Trainer
from srgnn.models import GCN
from srgnn.training.swa import SWAG, SWAConfig, multiswag_predict_proba, update_bn


def _watched(on_step, **config) -> SWAConfig:
    """A ``SWAConfig`` whose run calls ``on_step(run, model, optimizer, epoch, step)`` each epoch,
    ``step`` being the run's own step, so a test sees what the trainer does epoch by epoch."""
    class Watched(SWAConfig):
        def start_training(self, model, optimizer, epochs):
            run = super().start_training(model, optimizer, epochs)
            original = run.step
            run.step = lambda epoch: on_step(run, model, optimizer, epoch, original)
            return run

    return Watched(**config)


def test_equal_average_matches_manual_average(cora, cora_published):
    """Trainer+SWAConfig averages exactly the weights visited from the start epoch on."""
    saved = []

    def on_step(run, model, optimizer, epoch, step):
        step(epoch)
        if epoch >= run.start_epoch:
            saved.append(parameters_to_vector(model.parameters()).detach().clone())

    trainer = Trainer(GCN(1433, 7), epochs=40, seed=0, swa=_watched(on_step, start=0.5, lr=0.05)).fit(
        cora, cora_published[0])
    assert len(saved) == 20
    averaged = parameters_to_vector(trainer.model_.parameters()).detach()
    assert torch.allclose(averaged, torch.stack(saved).mean(0), atol=1e-6)


def test_update_bn_sets_full_graph_batch_statistics(cora):
    model = GCN(1433, 7, batch_norm=True)
    norm = model.norms[0]
    before = norm.running_mean.clone()
    captured = {}
    norm.register_forward_hook(lambda m, inputs, out: captured.setdefault("h", inputs[0].detach()))
    update_bn(model, cora)
    h = captured["h"]
    assert not torch.allclose(norm.running_mean, before)
    assert torch.allclose(norm.running_mean, h.mean(0), atol=1e-5)
    assert torch.allclose(norm.running_var, h.var(0, unbiased=True), atol=1e-5)


def test_update_bn_without_batchnorm_warns(cora):
    model = GCN(1433, 7)
    state = copy.deepcopy(model.state_dict())
    with pytest.warns(UserWarning, match="no BatchNorm"):
        update_bn(model, cora)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_swag_samples_have_stored_mean_and_variance():
    model = torch.nn.Linear(3, 2)
    swag = SWAG(model, max_rank=5)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 1.0)
        swag.collect()
    draws = torch.stack([swag.sample(generator=gen) for _ in range(20000)])
    d = torch.stack(list(swag.deviations), dim=1)
    expected_var = 0.5 * (swag.variance + (d ** 2).sum(1) / (d.size(1) - 1))
    assert torch.allclose(draws.mean(0), swag.mean, atol=0.03)
    assert torch.allclose(draws.var(0), expected_var, rtol=0.1, atol=1e-3)


def test_swag_bayesian_average_predicts(cora, cora_published):
    trainer = Trainer(GCN(1433, 7), epochs=60, seed=0).fit(cora, cora_published[0])
    swag = SWAG(trainer.model_, max_rank=0)
    swag.collect()
    probs = swag.predict_proba(cora.x, cora.edge_index, n_samples=3)
    assert probs.shape == (2708, 7) and torch.allclose(probs.sum(1), torch.ones(2708), atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_swag_on_cuda_draws_what_it_draws_on_the_cpu(cora, cora_published):
    trainer = Trainer(GCN(1433, 7), epochs=20, seed=0, device="cpu").fit(cora, cora_published[0])
    swags = {}
    for device in ("cpu", "cuda"):
        swags[device] = SWAG(copy.deepcopy(trainer.model_).to(device), max_rank=5)
        for _ in range(3):
            with torch.no_grad():
                for p in swags[device].model.parameters():
                    p.mul_(1.01)
            swags[device].collect()
    torch.testing.assert_close(swags["cuda"].sample(generator=torch.Generator().manual_seed(1)).cpu(),
                               swags["cpu"].sample(generator=torch.Generator().manual_seed(1)))
    probs = swags["cuda"].predict_proba(cora.x, cora.edge_index, n_samples=3)  # inputs on the CPU are moved
    torch.testing.assert_close(probs.cpu(), swags["cpu"].predict_proba(cora.x, cora.edge_index, n_samples=3),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("start", [1.0, -0.2, 1.5])
def test_start_outside_unit_interval(start):
    with pytest.raises(ValueError, match="start must lie in \\[0, 1\\)"):
        SWAConfig(start=start)


@pytest.mark.parametrize("config, match", [
    (dict(schedule="step"), "schedule='step' is not supported"),
    (dict(schedule="cyclical"), "needs lr"),
    (dict(every=0), "every"),
    (dict(cycle=0), "cycle"),
    (dict(swag_rank=-1), "swag_rank"),
])
def test_bad_swa_settings_are_refused(config, match):
    with pytest.raises(ValueError, match=match):
        SWAConfig(**config)


def _collected(config: SWAConfig, epochs: int) -> list[int]:
    model = torch.nn.Linear(2, 2)
    run = config.start_training(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs)
    return [epoch for epoch in range(epochs) if run.collects(epoch)]


def test_constant_schedule_collects_every_k_epochs_from_the_start():
    assert _collected(SWAConfig(start=0.5, every=3), 20) == [10, 13, 16, 19]


def test_cyclical_schedule_collects_at_each_cycle_end_where_the_rate_is_lowest(cora, cora_published):
    assert _collected(SWAConfig(start=0.5, schedule="cyclical", lr=0.001, cycle=5), 20) == [14, 19]
    rates = []

    def on_step(run, model, optimizer, epoch, step):
        rates.append((run.collects(epoch), optimizer.param_groups[0]["lr"]))
        step(epoch)

    trainer = Trainer(GCN(1433, 7), epochs=40, lr=0.05, seed=0,
                      swa=_watched(on_step, start=0.5, schedule="cyclical", lr=0.001, cycle=10)).fit(
        cora, cora_published[0])
    assert trainer.selected_ == "swa"
    in_cycles = rates[20:]
    assert in_cycles[0][1] == pytest.approx(0.05)  # each cycle starts at the optimizer's rate
    collected = [lr for collects, lr in in_cycles if collects]
    assert len(collected) == 2 and all(lr == pytest.approx(min(r for _, r in in_cycles)) for lr in collected)


def test_swag_is_collected_from_the_same_iterates_as_the_average(cora, cora_published):
    trainer = Trainer(GCN(1433, 7), epochs=40, seed=0,
                      swa=SWAConfig(start=0.5, lr=0.05, every=2, swag_rank=5)).fit(cora, cora_published[0])
    assert trainer.swag_.n == 10 and len(trainer.swag_.deviations) == 5
    averaged = parameters_to_vector(trainer.model_.parameters()).detach()
    torch.testing.assert_close(trainer.swag_.mean, averaged, atol=1e-5, rtol=1e-5)
    assert Trainer(GCN(1433, 7), epochs=5).fit(cora, cora_published[0]).swag_ is None


def test_warm_start_continues_from_the_trained_weights(cora, cora_published):
    train = cora_published[0]
    trained = Trainer(GCN(1433, 7), epochs=100, seed=0).fit(cora, train)
    weights = parameters_to_vector(trained.model_.parameters()).detach().clone()
    # One step at a negligible rate: a warm start keeps the weights; a cold one re-initialises them.
    warm = Trainer(trained.model_, epochs=1, lr=1e-12, weight_decay=0.0, optimizer="sgd", warm_start=True).fit(cora, train)
    torch.testing.assert_close(parameters_to_vector(warm.model_.parameters()).detach(), weights)
    cold = Trainer(copy.deepcopy(trained.model_), epochs=1, lr=1e-12, weight_decay=0.0, seed=1).fit(cora, train)
    assert not torch.allclose(parameters_to_vector(cold.model_.parameters()).detach(), weights)


def test_sgd_with_swa_from_a_warm_start_trains(cora, cora_published):
    train = cora_published[0]
    test = torch.ones(cora.num_nodes, dtype=torch.bool)
    test[train] = False
    trained = Trainer(GCN(1433, 7), epochs=200, seed=0).fit(cora, train)
    before = trained.evaluate(cora, test)["micro_f1"]
    swa = Trainer(trained.model_, epochs=50, lr=0.05, optimizer="sgd", warm_start=True,
                  swa=SWAConfig(start=0.0, lr=0.05)).fit(cora, train)
    assert swa.selected_ == "swa" and swa.evaluate(cora, test)["micro_f1"] > before - 0.03


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(GCN(1433, 7), optimizer="rmsprop")


def test_multiswag_averages_the_posteriors(cora, cora_published):
    swags = [Trainer(GCN(1433, 7), epochs=30, seed=s, swa=SWAConfig(start=0.5, lr=0.05, swag_rank=3))
             .fit(cora, cora_published[0]).swag_ for s in (0, 1)]
    probs = multiswag_predict_proba(swags, cora.x, cora.edge_index, n_samples=2)
    each = [swag.predict_proba(cora.x, cora.edge_index, 2, seed) for seed, swag in enumerate(swags)]
    torch.testing.assert_close(probs, (each[0] + each[1]) / 2)
    with pytest.raises(ValueError, match="two or more"):
        multiswag_predict_proba(swags[:1], cora.x, cora.edge_index)


def _validation(cora, train):
    val = cora.val_mask.nonzero().view(-1)
    return val[~torch.isin(val, train)]


def test_early_stopping_before_averaging_keeps_the_early_stopped_weights(cora, cora_published):
    # Regression: the Trainer returned AveragedModel's copy of the initial weights (12.9% F1).
    train = cora_published[0]
    val = _validation(cora, train)
    plain = Trainer(GCN(1433, 7), patience=20, seed=0).fit(cora, train, val_idx=val)
    with_swa = Trainer(GCN(1433, 7), patience=20, seed=0, swa=SWAConfig(start=0.95)).fit(cora, train, val_idx=val)
    assert len(with_swa.history_) < 190 and with_swa.selected_ == "best"
    torch.testing.assert_close(with_swa.logits(cora), plain.logits(cora))
    assert with_swa.evaluate(cora, val)["micro_f1"] > 0.5


def test_averaging_competes_with_the_early_stopped_weights_on_validation(cora, cora_published):
    train = cora_published[1]
    val = _validation(cora, train)
    plain = Trainer(GCN(1433, 7), patience=30, seed=0).fit(cora, train, val_idx=val)
    with_swa = Trainer(GCN(1433, 7), patience=30, seed=0, swa=SWAConfig(start=0.1)).fit(cora, train, val_idx=val)
    assert with_swa.selected_ in ("best", "swa")
    assert with_swa.evaluate(cora, val)["micro_f1"] >= plain.evaluate(cora, val)["micro_f1"]
    if with_swa.selected_ == "best":
        torch.testing.assert_close(with_swa.logits(cora), plain.logits(cora))


def test_swag_recomputes_batchnorm_statistics_for_each_draw(cora, cora_published):
    # Regression: every draw predicted with the statistics of the weights SWAG was built from.
    trainer = Trainer(GCN(1433, 7, batch_norm=True), epochs=30, seed=0).fit(cora, cora_published[0])
    swag = SWAG(trainer.model_, max_rank=3)
    with torch.no_grad():
        for step in range(4):
            for p in swag.model.parameters():
                p.add_(0.05 * torch.randn_like(p))
            swag.collect()
    probs = swag.predict_proba(cora.x, cora.edge_index, n_samples=1, seed=3)
    draw = copy.deepcopy(swag.model).eval()
    with torch.no_grad():
        vector_to_parameters(swag.sample(generator=torch.Generator().manual_seed(3)), draw.parameters())
        stale = draw(cora.x, cora.edge_index).softmax(-1)
        update_bn(draw, cora)
        fresh = draw(cora.x, cora.edge_index).softmax(-1)
    torch.testing.assert_close(probs, fresh)
    assert not torch.allclose(probs, stale, atol=1e-3)

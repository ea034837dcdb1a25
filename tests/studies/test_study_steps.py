from benchmarks import study_steps


def test_every_step_is_timed_and_the_slowest_named(capsys):
    rows = study_steps.main(["--dataset", "citeseer", "--methods", "gcn,sr-appnp", "--epochs", "2"])
    labels = [label for label, _ in rows]
    assert labels[:7] == ["load the graph", "Graph.from_data", "a localized set, the first (LocalizedSampler)",
                          "a localized set, the next", "its IID set", "KMM weights, the first (exact PPR rows + QP)",
                          "KMM weights, the next"]
    assert labels[7:] == ["fit and score gcn (2 epochs)", "fit and score sr-appnp (2 epochs)"]
    assert all(seconds >= 0 for _, seconds in rows)
    slowest = max(rows, key=lambda row: row[1])[0]
    assert f"slowest step: {slowest}" in capsys.readouterr().out

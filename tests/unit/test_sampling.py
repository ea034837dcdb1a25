import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import splu as scipy_splu
import torch
from torch_geometric.data import Data

from srgnn.kernels.dissection import inverse_sq_column_norms, plan
from srgnn.ppr import graph_ppr, ppr, ppr_sq_norms
from srgnn.kernels.propagation import normalized_adjacency
from srgnn.sampling import (LocalizedSampler, default_teleport, degree_biased_sample, iid_sample, load_published_splits,
                             within_class_hops)
from srgnn.robustness.shift import cmd
from tests.helpers import SEEDS_DIR


def _system(data, teleport):
    """Dense I - (1 - teleport) D^-1/2 (A + I) D^-1/2."""
    ei = data.edge_index.numpy()
    n = data.num_nodes
    a = sp.csr_matrix((np.ones(ei.shape[1]), ei), shape=(n, n)).toarray() + np.eye(n)
    d = a.sum(1) ** -0.5
    return np.eye(n) - (1 - teleport) * d[:, None] * a * d[None, :]


def _dense_ppr(data, sources, teleport):
    n = data.num_nodes
    system = _system(data, teleport)
    rhs = np.zeros((n, len(sources)))
    rhs[sources, np.arange(len(sources))] = 1
    return teleport * np.linalg.solve(system, rhs)


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_ppr_matches_dense_solve_on_cora(cora, solver):
    sources = torch.arange(0, 2708, 27)
    exact = _dense_ppr(cora, sources.numpy(), 0.01)
    ours = graph_ppr(cora, sources, 0.01, solver=solver).numpy()
    assert np.abs(ours - exact).max() < 1e-6


def test_ppr_solvers_agree_on_pubmed_100_sources(pubmed):
    sources = torch.arange(0, 19717, 198)[:100]
    direct = graph_ppr(pubmed, sources, 0.01, solver="direct")
    iterative = graph_ppr(pubmed, sources, 0.01, solver="cg", tol=1e-8)
    assert direct.shape == (19717, 100)
    assert (direct - iterative).abs().max() < 1e-6
    assert bool((direct >= -1e-12).all()) and bool((direct[sources, torch.arange(100)] > 0).all())


def test_ppr_sq_norms_and_rhs_solves_match_the_ppr_columns(cora):
    adj = normalized_adjacency(cora.edge_index, cora.num_nodes, "sym", dtype=torch.float64)
    sources = torch.arange(3, 2708, 61)  # 45 columns: two full blocks of LU_BLOCK and a partial one
    columns = ppr(adj, sources, 0.01, solver="direct")
    torch.testing.assert_close(ppr_sq_norms(adj, sources, 0.01), (columns ** 2).sum(0), rtol=1e-12, atol=0)
    exact = _dense_ppr(cora, sources.numpy(), 0.01)
    rhs = torch.from_numpy(exact[:, ::-1].copy())
    torch.testing.assert_close(ppr(adj, rhs=rhs, teleport=0.01, solver="direct"),
                               torch.from_numpy(0.01 * np.linalg.solve(_system(cora, 0.01), rhs.numpy())))


def test_dissection_gives_every_ppr_norm_exactly(cora):
    # The Schur-complement formula against dense columns, on every node: interior nodes of
    # small and large components and separator nodes alike.
    adj = normalized_adjacency(cora.edge_index, cora.num_nodes, "sym", dtype=torch.float64)
    system = sp.csr_matrix(_system(cora, 0.01))
    lu = scipy_splu(system.tocsc())
    split = plan(system, np.argsort(lu.perm_c))
    assert split is not None and 0 < split.separator.size < cora.num_nodes // 4
    assert np.bincount(split.labels).max() < cora.num_nodes // 4  # the rest shattered
    nodes = np.random.default_rng(0).permutation(cora.num_nodes)
    dense_inverse = np.linalg.inv(_system(cora, 0.01))
    expected = (dense_inverse ** 2).sum(0)[nodes]
    np.testing.assert_allclose(inverse_sq_column_norms(split, nodes), expected, rtol=1e-10)
    # ppr_sq_norms takes this path for a whole pool and gives the columns' norms.
    pool = torch.arange(1500)
    torch.testing.assert_close(ppr_sq_norms(adj, pool, 0.01), torch.from_numpy(1e-4 * (dense_inverse ** 2).sum(0)[:1500]),
                               rtol=1e-10, atol=0)


def test_ppr_sq_norms_uses_the_dissection_only_when_it_pays(cora, monkeypatch):
    import srgnn.ppr as propagation

    calls = []
    real = propagation.inverse_sq_column_norms
    monkeypatch.setattr(propagation, "inverse_sq_column_norms", lambda *a: calls.append(1) or real(*a))
    adj = normalized_adjacency(cora.edge_index, cora.num_nodes, "sym", dtype=torch.float64)
    few, many = ppr_sq_norms(adj, torch.arange(3), 0.01), ppr_sq_norms(adj, torch.arange(1500), 0.01)
    assert calls == [1]  # three columns are solved; 1,500 go through the dissection
    torch.testing.assert_close(many[:3], few, rtol=1e-10, atol=0)
    row = normalized_adjacency(cora.edge_index, cora.num_nodes, "row", dtype=torch.float64)
    ppr_sq_norms(row, torch.arange(1500), 0.01)  # not symmetric: the algebra does not hold
    assert calls == [1]


def test_localized_sampler_breaks_distance_ties_by_node_id(monkeypatch):
    # Class 0: a path 0-1-2 into hub 3 with ten leaves 4..13; class 1: a copy, nodes 14..27.
    # For any seed every other leaf of its hub lies at the same distance, so the chosen leaves
    # must be the lowest-numbered ones, however the solver rounds: rounding noise is added.
    import srgnn.sampling.localized as localized

    exact, noise = localized.ppr_sq_norms, torch.Generator().manual_seed(0)

    def rounded_differently(*args, **kwargs):
        norms = exact(*args, **kwargs)
        return norms * (1 + 1e-14 * torch.randn(norms.shape, generator=noise, dtype=norms.dtype))

    monkeypatch.setattr(localized, "ppr_sq_norms", rounded_differently)
    edges = [(0, 1), (1, 2), (2, 3)] + [(3, leaf) for leaf in range(4, 14)]
    edges += [(a + 14, b + 14) for a, b in edges]
    edge_index = torch.tensor(edges).T
    data = Data(x=torch.eye(28), edge_index=torch.cat([edge_index, edge_index.flip(0)], 1),
                y=torch.tensor([0] * 14 + [1] * 14))
    sampler = LocalizedSampler(data, per_class=6, pool=torch.arange(28), sketch_dim=None)
    for seed in range(20):
        chosen = sampler.sample(seed)
        for first, leaves in ((chosen[0], range(4, 14)), (chosen[6], range(18, 28))):
            picked = sorted(int(v) for v in chosen if int(v) in leaves and v != first)
            others = [leaf for leaf in leaves if leaf != int(first)]
            assert picked == others[:len(picked)]


@pytest.mark.slow
def test_ppr_matches_dense_solve_on_pubmed(pubmed):
    sources = torch.arange(0, 19717, 198)[:100]
    exact = _dense_ppr(pubmed, sources.numpy(), 0.01)
    assert np.abs(graph_ppr(pubmed, sources, 0.01).numpy() - exact).max() < 1e-4


def test_normalized_adjacency_is_kept_on_a_graph_and_symmetric(cora):
    from srgnn.graph import Graph

    a = normalized_adjacency(cora.edge_index, cora.num_nodes)
    graph = Graph(cora.edge_index, cora.num_nodes)
    assert graph.adjacency() is graph.adjacency() and torch.equal(graph.adjacency().matrix.values(), a.values())
    assert graph.adjacency().transposed is graph.adjacency().matrix  # symmetric: its own transpose
    dense = a.to_dense()
    assert torch.allclose(dense, dense.T)
    row = normalized_adjacency(cora.edge_index, cora.num_nodes, "row").to_dense()
    assert torch.allclose(row.sum(1), torch.ones(cora.num_nodes))


def test_localized_sampler_shape_determinism_and_locality(cora, cora_published):
    sampler = LocalizedSampler(cora)
    sets = sampler.sample_many(10, seed=7)
    assert all(s.shape == (140,) and s.unique().numel() == 140 for s in sets)
    assert all(bool((s < 1500).all()) for s in sets)  # the paper's pool
    assert torch.equal(sets[3], sampler.sample(10))
    assert torch.equal(sets[0], LocalizedSampler(cora).sample(7))
    y = cora.y[sets[0]].view(7, 20)
    assert bool((y == torch.arange(7)[:, None]).all())
    ours, published = within_class_hops(cora, sets), within_class_hops(cora, cora_published[:10])
    random_sets = [iid_sample(cora, 140, i, candidates=torch.arange(1500)) for i in range(10)]
    assert ours < 4.0 and published < 4.0 and within_class_hops(cora, random_sets) > 5.0


def test_localized_sets_are_shifted_like_the_published_ones(cora, cora_published):
    test_nodes = cora.test_mask.nonzero().view(-1)
    x = cora.x

    def mean_cmd(sets):
        return float(np.mean([cmd(x[s], x[test_nodes]).item() for s in sets]))

    ours = mean_cmd(LocalizedSampler(cora).sample_many(20, 0))
    iid = mean_cmd([iid_sample(cora, 140, i) for i in range(20)])
    published = mean_cmd(cora_published[:20])
    assert ours > 1.1 * iid and published > 1.1 * iid
    assert 0.5 < ours / published < 2.0


def test_sketched_sampler_stays_local(cora):
    sets = LocalizedSampler(cora, sketch_dim=256).sample_many(5, 0)
    assert within_class_hops(cora, sets) < 4.5


def test_per_class_larger_than_pool_is_rejected(cora):
    with pytest.raises(ValueError, match="Class .* node\\(s\\) in the pool but per_class=500"):
        LocalizedSampler(cora, per_class=500)


def test_out_of_range_pool_is_rejected(cora):
    with pytest.raises(IndexError, match="outside the graph's range"):
        LocalizedSampler(cora, pool=torch.tensor([0, 5000]))


def test_iid_sample_ignores_labels_and_excludes(cora):
    train = LocalizedSampler(cora).sample(0)
    a = iid_sample(cora, 300, seed=1, exclude=train)
    assert a.unique().numel() == 300 and not torch.isin(a, train).any()
    shuffled = cora.clone()
    shuffled.y = cora.y[torch.randperm(cora.num_nodes)]
    assert torch.equal(a, iid_sample(shuffled, 300, seed=1, exclude=train))
    balanced = iid_sample(cora, 140, seed=1, balanced=True)
    assert torch.equal(torch.bincount(cora.y[balanced]), torch.full((7,), 20))


def test_degree_biased_sample_prefers_hubs(cora):
    from torch_geometric.utils import degree

    deg = degree(cora.edge_index[0], cora.num_nodes)
    biased = torch.cat([degree_biased_sample(cora, 20, seed=i, power=2.0) for i in range(5)])
    uniform = torch.cat([degree_biased_sample(cora, 20, seed=i, power=0.0) for i in range(5)])
    assert deg[biased].mean() > 2 * deg[uniform].mean()


def test_published_splits_load(cora_published):
    assert len(cora_published) == 100 and all(s.numel() == 140 for s in cora_published)


def test_tampered_seeds_pickle_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps([[1, 2, Exploit()]]))
    with pytest.raises(ValueError, match="refused to load global builtins.print"):
        load_published_splits(path)
    wrong = tmp_path / "wrong.p"
    wrong.write_bytes(pickle.dumps([[1, 2], "3"]))
    with pytest.raises(ValueError, match="lists of ints"):
        load_published_splits(wrong)


def test_published_splits_range_checked(tmp_path):
    unnamed = tmp_path / "sets.p"  # no dataset in the name: the ids' range is what catches it
    unnamed.write_bytes((SEEDS_DIR / "localized_seeds_pubmed.p").read_bytes())
    with pytest.raises(IndexError, match="another dataset"):
        load_published_splits(unnamed, num_nodes=2708)


def test_property_sampler_draws_from_the_most_popular_quarter(cora):
    import networkx as nx
    from torch_geometric.utils import to_networkx

    from srgnn.sampling import PropertySampler

    sampler = PropertySampler(cora, "popularity", per_class=20)
    rank = torch.tensor(list(nx.pagerank(to_networkx(cora, to_undirected=True, remove_self_loops=True)).values()))
    top = rank.argsort(descending=True)[: round(0.25 * cora.num_nodes)]
    assert set(sampler.pool_.tolist()) == set(top.tolist())
    first = sampler.sample(3)
    assert torch.equal(first, sampler.sample_many(2, seed=2)[1])
    assert torch.bincount(cora.y[first], minlength=7).tolist() == [20] * 7
    assert torch.isin(first, sampler.pool_).all()


def test_property_sampler_refuses_what_it_cannot_draw(cora):
    from srgnn.sampling import PropertySampler

    with pytest.raises(ValueError, match="property_name must be one of"):
        PropertySampler(cora, "pagerank")
    with pytest.raises(ValueError, match="share must lie in"):
        PropertySampler(cora, share=1.5)
    with pytest.raises(ValueError, match=r"Class\(es\) .* have no node among the top"):
        PropertySampler(cora, "density", share=0.001)


def test_a_sampler_on_a_graph_draws_the_same_sets_and_leaves_its_ppr_work_for_kmm(cora):
    from srgnn import Graph, ShiftRobust
    from srgnn.models import APPNP
    from srgnn.robustness.preparation import prepare

    pool = torch.arange(cora.num_nodes)
    graph = Graph.from_data(cora)
    on_graph = LocalizedSampler(graph, pool=pool).sample_many(2, seed=0)
    alone = LocalizedSampler(cora, pool=pool).sample_many(2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(on_graph, alone))
    teleport = default_teleport(cora)
    lu = graph.cache[("lu", teleport)]
    prepare(ShiftRobust(APPNP(cora.num_features, 7), kmm_teleport=teleport), graph, on_graph[0])
    assert graph.cache[("lu", teleport)] is lu  # KMM solved with the sampler's factorization

"""Training-set samplers: the paper's localized sampler, its large-graph PPR-S (push-based
approximate PPR), sets biased by a structural property (PyG's ``NodePropertySplit``), IID and
degree-biased references, the authors' published sets, and the
personalized PageRank they rest on."""
from ..ppr import graph_ppr as personalized_pagerank
from .localized import DEFAULT_TELEPORT, LocalizedSampler, default_pool, default_teleport, within_class_hops
from .property import PropertySampler
from .published import load_published_splits
from .push import PushSampler, push_ppr, push_sq_distances
from .random_sets import degree_biased_sample, iid_sample

__all__ = ["LocalizedSampler", "DEFAULT_TELEPORT", "default_pool", "default_teleport", "iid_sample",
           "degree_biased_sample", "load_published_splits", "personalized_pagerank", "within_class_hops",
           "PushSampler", "push_ppr", "push_sq_distances", "PropertySampler"]

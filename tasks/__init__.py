"""Problem settings of the papers: data, reference algorithms, analytic constructions, metrics,
and each paper's experiments and claims.

One module per setting (e.g. ``tasks.icl_regression``); nothing here is framework code, and
nothing in ``tinynim/`` imports it. Each module listed in :data:`PAPERS` defines

* ``CLAIMS``: its :class:`tinynim.claims.Claim` tuple (reference numbers and pass bounds);
* ``measure(experiment, *, quick_mode=None, log=None, seed_offset=0) -> dict``: the metrics
  the claims of that experiment read; an experiment is a key of ``EXPERIMENTS`` (training
  runs) or of the optional ``MEASUREMENTS`` (measurements that train nothing, e.g. Monte
  Carlo over initialisations).
"""
import importlib

PAPERS = ("tasks.icl_regression", "tasks.mesa_optimization", "tasks.gated_rnn_attention",
          "tasks.noisy_regression", "tasks.state_soup", "tasks.modular_teacher", "tasks.ntk_ensembles",
          "tasks.randomized_algorithms", "tasks.compositional_icl", "tasks.learning_aware_pg")


def paper_modules():
    """The task modules that declare claims, imported, in the order of :data:`PAPERS`."""
    return [importlib.import_module(name) for name in PAPERS]

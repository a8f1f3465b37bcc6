"""Problem settings of the papers: data, reference algorithms, analytic constructions, metrics.

One module per setting (e.g. ``tasks.icl_regression``); nothing here is framework code.
"""

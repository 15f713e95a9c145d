"""Using a trained anytime network: latency profiles, predictions under a time budget,
the accuracy-versus-cost sweep of the confidence threshold, and prediction on image files.

Layer: beside ``engine``, above ``evaluation``. May import evaluation, models, datasets,
utils and config; nothing imports it but the tools.
"""

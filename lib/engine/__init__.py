"""A training run of the anytime network: the epoch loop, the multi-exit criterion, the
poly schedule, mixed precision and the run's checkpoints (``train`` runs it all).

Layer: above ``evaluation`` (a run validates and finally tests its model). May import
evaluation, models, datasets, utils and config; nothing imports it but the tools.
"""

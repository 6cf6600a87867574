"""The search space (``conf/search``): the YAML space turned into ``trial.suggest_*`` calls and
written into a trial's config, its checks, the optimizer and schedule families it can draw, and
``search.widen``."""

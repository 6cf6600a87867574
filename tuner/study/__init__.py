"""The study loop of ``mode=tune`` and what it keeps: trials asked, run and told; the Optuna study,
its sampler and pruner; the session with its MLflow parent run; populations, arms, progress, tables."""

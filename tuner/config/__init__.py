"""The config folder's path, composition with Hydra and config-node helpers: leaves every layer
may read (validation itself is :mod:`tuner.validate`)."""

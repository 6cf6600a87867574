"""Schedules (``conf/schedule``), a leaf: the learning rate as a pure function of the step, the
families with their keys and defaults, ``mode=schedule``'s plot and each trial's LR figure."""

"""Storage, a service: the Optuna storages of ``conf/storage``, workers coordinated through them
(slots, heartbeats, lost trials) and the fault guard for a storage that goes away."""

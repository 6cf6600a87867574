"""The LR range test (``mode=find``) and the search that starts from its answer.

Modules: ``rangetest`` (the test itself), ``rules`` (reading suggestions off a curve),
``run`` (several seeds, plot, MLflow), ``narrow`` (``search.from_finder``), ``settings``
(config checks), ``plot``. Nothing is imported here, so that checking a config stays cheap.
"""

"""Results to look at: the study's plots and its Markdown / HTML report.

``tuner.report.build.write_report`` draws and writes everything; ``settings`` checks the
``report`` config group without importing the plotting stack.
"""

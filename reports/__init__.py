"""HTML reports from results files only (``result.json`` records and pytest-benchmark JSON).

Nothing here imports torch: a report can be built on any machine that has the ``runs/`` folder.
``python -m reports RESULTS_DIR -o report.html``.
"""

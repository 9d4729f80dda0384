"""The reproducible report: the papermill runner, the experiments the notebooks call, tables and plots."""

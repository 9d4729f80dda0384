"""The reproducible study: its design, the cached runs, their statistics and verdict, the paper's other claims,
and the tables, prose and plots the papermill-run notebooks show (rooms listed in tests/test_layers.py)."""

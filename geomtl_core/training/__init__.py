"""Training with ``keras.Model.fit``: optimizer and schedule, callbacks, exact resume, data-parallel runs."""

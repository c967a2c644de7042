"""A run's folder and its files: the checkpoint format, the status, the history, the evaluations, one writer."""

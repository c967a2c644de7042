"""Training a detector: train.py's command line, the data stage, the optimizer and schedule, and the run as stages."""

"""What a run is, read by every part: its options (TrainOptions, checking themselves) and the loss it minimises."""

"""Where a detector computes: a split's batches on the device, and the one training step, epoch and evaluation pass."""

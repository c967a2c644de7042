"""Training a detector: its options, loss, loops, batches on the device, augmentation, and the run as stages."""

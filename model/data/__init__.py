"""The course dataset: annotation rows, images, the decode cache, boxes, augmentation, the demo and Caltech-101
generators."""

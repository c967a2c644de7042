"""The course dataset: annotation rows, images, the decode cache, boxes, and the demo and Caltech-101 generators."""

"""predict.py's work: reading its inputs, running the model image by image, drawing, showing or saving, and
annotating boxes."""

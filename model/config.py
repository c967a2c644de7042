"""Constants and defaults of the toolkit: paths, image preprocessing and the practical's settings.

Everything here is read-only. Scripts take these as the defaults of their command-line options,
so an experiment never needs an edit of this file.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = Path("output")

# Where the course dataset is looked for, in this order (model/dataset.py, find_dataset):
# --dataset PATH, then $CVPR_DATASET, then the course cluster's folder, then ./dataset.
COURSE_DATASET = Path("/matieres/5MMVORF/01-dataset")
LOCAL_DATASET = Path("dataset")
# Written when none of the above exists; inside output/ so that git ignores it.
DEMO_DATASET = PROJECT_ROOT / "output" / "demo_dataset"
DEMO_IMAGES = 600  # sized so that the README's main command trains in < 5 min on 2 CPU cores
DEMO_SEED = 0
# Decoded images, one memory-mapped file per dataset and image size (model/images.py, ImageCache); delete at will.
# $CVPR_CACHE_DIR moves it (e.g. to a cluster's scratch disk).
CACHE_DIR = PROJECT_ROOT / "output" / "cache"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Input of every network: RGB, resized to IMAGE_SIZE x IMAGE_SIZE, ImageNet normalisation
# (what torchvision's pretrained ResNet expects; the other networks do as well with it).
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The course template's training settings (model/config.py of the template).
NUM_EPOCHS = 20
BATCH_SIZE = 32
INIT_LR = 1e-4
LABEL_WEIGHT = 1.0
BOX_WEIGHT = 1.0
DEFAULT_BOX_LOSS = "smooth-l1+giou"  # the best boxes on the demo set (README, "Why these loss defaults")
CUT_VAL = 0.8  # rows [0, 80 %) of the shuffled annotations train
CUT_TEST = 0.9  # rows [80 %, 90 %) validate, [90 %, 100 %) test
SPLIT_SEED = 0
# The order in which the course cluster lists the annotation files (the template's os.listdir).
# The template shuffles the rows in this order, so reading the files in it reproduces the course's
# split row for row; any other order gives another split. Files not named here follow, sorted by
# name. Class indices do not depend on it: they are the sorted labels.
ANNOTATION_FILE_ORDER = ("motorcycle.csv", "airplane.csv", "face.csv")

# File names inside a run folder.
BEST_CHECKPOINT = "best.pth"
LAST_CHECKPOINT = "last.pth"
SPLIT_FILES = {"train": "training_data.csv", "val": "val_data.csv", "test": "test_data.csv"}
HISTORY_FILE = "history.csv"
PLOT_FILE = "convergence_plot.png"
CONFIG_FILE = "config.json"  # the run's options (model/options.py)
RUN_FILE = "run.json"  # what the options do not say: dataset path, device, versions, host, Slurm job

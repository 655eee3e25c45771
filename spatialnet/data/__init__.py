"""The data stage: MNIST and Fashion-MNIST (or any M tasks) read from their files or the embedded
subset, and the fixed validation split (``read.py``); the batches of the paper's three input
modes and the loss per head (``batches.py``); the tasks (``tasks.py``); images side by side for
vision models (``images.py``); the embedded subset's maker (``python -m spatialnet.data.make_subset``)."""
from .batches import TaskData, load_data, task_loss_sum
from .read import (DATASETS, EVAL_SPLITS, MODES, NUM_CLASSES, RAW_FILES, SUBSET_BANNER, SUBSET_PATH, VAL_SEED,
                   VAL_SIZE, DoubleMNIST, Split, check_mode, default_data_dir, full_data_present, input_dim, load,
                   load_full, load_subset, missing_files, read_idx, val_size, validation_indices, with_validation)
from .tasks import DEFAULT_TASKS, PIXELS, build_tasks, check_tasks, display_name, pixel_permutation

__all__ = ["DATASETS", "DEFAULT_TASKS", "DoubleMNIST", "EVAL_SPLITS", "MODES", "NUM_CLASSES", "PIXELS", "RAW_FILES",
           "SUBSET_BANNER", "SUBSET_PATH", "Split", "TaskData", "VAL_SEED", "VAL_SIZE", "build_tasks", "check_mode",
           "check_tasks", "default_data_dir", "display_name", "full_data_present", "input_dim", "load", "load_data",
           "load_full", "load_subset", "missing_files", "pixel_permutation", "read_idx", "task_loss_sum",
           "val_size", "validation_indices", "with_validation"]

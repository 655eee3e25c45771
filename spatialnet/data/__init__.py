"""The data stage: MNIST and Fashion-MNIST (or any M tasks) in the paper's three input modes, the
fixed validation split, and the batches a run trains on (``mnist.py``); the tasks (``tasks.py``);
the embedded subset's maker (``python -m spatialnet.data.make_subset``)."""
from .mnist import (DATASETS, EVAL_SPLITS, MODES, NUM_CLASSES, RAW_FILES, SUBSET_BANNER, SUBSET_PATH, VAL_SEED,
                    VAL_SIZE, DoubleMNIST, Split, TaskData, check_mode, default_data_dir, full_data_present,
                    input_dim, load, load_data, load_full, load_subset, missing_files, read_idx, task_loss_sum,
                    val_size, validation_indices, with_validation)
from .tasks import DEFAULT_TASKS, PIXELS, build_tasks, check_tasks, display_name, pixel_permutation

__all__ = ["DATASETS", "DEFAULT_TASKS", "DoubleMNIST", "EVAL_SPLITS", "MODES", "NUM_CLASSES", "PIXELS", "RAW_FILES",
           "SUBSET_BANNER", "SUBSET_PATH", "Split", "TaskData", "VAL_SEED", "VAL_SIZE", "build_tasks", "check_mode",
           "check_tasks", "default_data_dir", "display_name", "full_data_present", "input_dim", "load", "load_data",
           "load_full", "load_subset", "missing_files", "pixel_permutation", "read_idx", "task_loss_sum",
           "val_size", "validation_indices", "with_validation"]

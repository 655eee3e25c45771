"""What defines a run: ``TrainConfig``, its checks, and the values training uses per layer.

The defaults (README.md, docs/protocol.md): the paper's net, batch, lr 0.005 and V over pairs
(1/N^2), transport as the mean over connections (as its authors' code took it), Glorot gain 1,
every output neuron started like the rest (no head offset: the clusters are learned, not seeded),
and per mode (``CHOSEN``) alpha, beta, the positions' lr multiple and the costs' warm-up, chosen on
the validation split with selection seeds. ``width_rule="auto"`` carries them to other widths
(``width.py``, docs/width-rule.md). ``PRESETS`` name earlier settings: the paper's, and the
recipe chosen on the test sets that the first records used.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


from . import data as data_mod
from spatial_kernels.nn import DENSITY_NORMS, TRANSPORT_NORMS
from spatial_kernels.nn import density_norm as check_density_norm, transport_norm as check_transport_norm

from .model import ACTIVATIONS, INITS, TRANSPORTS, check_spatial_layers
from .data.tasks import DEFAULT_TASKS, check_tasks
from .width import width_rule

NETS = ("regular", "spatial")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
WEIGHT_DTYPES = ("float32", "bfloat16")
WIDTH_RULES = ("auto", "glorot", "none")
DATA_SOURCES = ("full", "subset", "auto")
PAPER_MEAN_HIDDEN = 160  # (128 + 128 + 128 + 256) / 4
# The regular net's own settings in studies, a fair baseline: the paper's lr, gain 1. NOTE: at the
# spatial net's lr 0.0024 and gain 2 the greedy split gave every regular seed's layer 3 whole to
# MNIST; at these the regular concat drop is 0.006 with balanced groups.
REGULAR_HPARAMS = {"lr": 0.005, "init_gain": 1.0}
PAPER_HPARAMS = {"alpha": 1.0, "beta": 3.0, "lr": 0.005, "pos_lr_scale": 1.0, "cost_warmup": 0.0, "init_gain": 1.0,
                 "head_offset": 0.0, "density_norm": "per_pair"}
# the recipe selected on the test sets, before the validation protocol; kept to read the earlier records
RECIPE_2025_HPARAMS = {"alpha": 9.0, "beta": 20.0, "lr": 0.0024, "pos_lr_scale": 0.85, "cost_warmup": 0.0,
                       "init_gain": 2.0, "head_offset": 1.6, "density_norm": "per_neuron"}
# the settings --preset names (the defaults are the chosen setting)
PRESETS = {"paper": PAPER_HPARAMS, "recipe-2025": RECIPE_2025_HPARAMS}

# The chosen setting, per mode (docs/protocol.md says how it was chosen). A TrainConfig left at
# None in these fields takes its mode's values.
# NOTE: concat and mix: trial 25 of the three-mode selection sweep (results/sweeps/one-setting-val.md),
# the highest smallest margin over concat's and mix's targets at 1x and 2x (results/check-2x/).
# NOTE: sequential: no trial of either sweep met its targets (no silhouette reached 0.25); trial 5
# of its own sweep (results/sweeps/sequential-val.md), the highest margin.
CHOSEN = {
    "concat": {"alpha": 0.911, "beta": 3.32, "pos_lr_scale": 5.83, "cost_warmup": 8.09},
    "mix": {"alpha": 0.911, "beta": 3.32, "pos_lr_scale": 5.83, "cost_warmup": 8.09},
    "sequential": {"alpha": 1.27, "beta": 15.1, "pos_lr_scale": 0.932, "cost_warmup": 5.34},
}
PER_MODE = ("alpha", "beta", "pos_lr_scale", "cost_warmup")


@dataclass(frozen=True)
class LayerValues:
    """The values training uses, per 1-based layer: the width rule's (``width.py``) for a net
    ``width_factor`` times the paper's width, the flags' at 1x. ``alpha`` and ``beta`` of every
    spatial layer, ``density_length`` of every positioned one, ``lr`` of every weight matrix;
    ``bias_lr`` and ``pos_lr`` one each."""
    width_factor: float
    alpha: dict
    beta: dict
    density_length: dict
    lr: dict
    bias_lr: float
    pos_lr: float
    init_scale: dict

    def to_json(self) -> dict:
        """A JSON object (layer keys as strings), as the records keep it under ``effective``."""
        key = lambda d: {str(k): v for k, v in d.items()}  # noqa: E731
        return {"width_factor": self.width_factor, "alpha": key(self.alpha), "beta": key(self.beta),
                "density_length": key(self.density_length), "lr": key(self.lr), "bias_lr": self.bias_lr,
                "pos_lr": self.pos_lr, "init_scale": key(self.init_scale)}


def _field(default, help: str, choices=None, *, runtime: bool = False, type_=None):
    """A config field with what the command line says of it (``cli.py`` makes one flag per field).
    A default of None is the mode's chosen setting (``CHOSEN``); ``type_`` is then its type."""
    meta = {"help": help, "choices": choices, "runtime": runtime, "type": type_ or type(default)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that defines a run; the defaults are the recipe (see the module docstring).
    Each field's metadata is its command-line flag's help and choices (``cli.py``)."""
    mode: str = _field("concat", "input mode", data_mod.MODES)
    net: str = _field("spatial", "spatial (the costs) or regular (the same MLP without them)", NETS)
    seed: int = _field(0, "seed of the weights, positions and batches (report seeds 0-4; selection >= 100)")
    epochs: int = _field(30, "epochs")
    hidden: list = _field([128, 128, 128, 256], "hidden widths, comma-separated (the paper's 128,128,128,256)")
    spatial_layers: list = _field([3, 4, 5], "1-based Linear-layer indices with costs (the paper's 3,4,5: third "
                                             "hidden, fourth, output)")
    tasks: list = _field(list(DEFAULT_TASKS), "tasks learnt at once, comma-separated: mnist, fashion, pmnist<k> "
                                              "(MNIST with a fixed pixel permutation k); 10 outputs each")
    alpha: float = _field(None, "transport weight (the paper's 1)", type_=float)
    beta: float = _field(None, "density weight (the paper's 3)", type_=float)
    lr: float = _field(0.005, "Adam learning rate of the weights (the paper's 0.005)")
    batch_size: int = _field(256, "batch size (the paper's 256)")
    optimizer: str = _field("adam", "adam, or sgd (with momentum 0.9)", OPTIMIZERS)
    schedule: str = _field("constant", "learning-rate schedule: constant, or cosine (decay to 0 over the run)", SCHEDULES)
    transport_norm: str = _field("per_connection", "T(l) over 1/(N_l N_{l-1}), the mean over connections as the "
                                 "authors' code took it (per_connection), or over 1/N_l as the paper prints it "
                                 "(per_out)", TRANSPORT_NORMS)
    density_norm: str = _field("per_pair", "V(l) over 1/N_l^2, the paper's (per_pair), or 1/N_l (per_neuron)",
                               DENSITY_NORMS)
    activation: str = _field("sigmoid", "activation of the hidden layers (the paper's sigmoid)", tuple(ACTIVATIONS))
    dim: int = _field(2, "coordinates per neuron, 1..3")
    init: str = _field("glorot", "glorot (Glorot-uniform, zero biases) or torch (nn.Linear's default)", INITS)
    init_gain: float = _field(1.0, "Glorot gain (4 is Glorot & Bengio's advice for sigmoids)")
    head_offset: float = _field(0.0, "start the output heads this far apart (0: the paper's N(0, 1) for all); "
                                     "applies when the output layer is spatial")
    transport: str = _field("distance", "distance (the paper) or constant: the L1-only control, every distance in "
                                        "T replaced by the layer's mean distance (is space needed at all?)", TRANSPORTS)
    freeze_positions: bool = _field(False, "the frozen-positions control: the weights learn, the positions keep "
                                           "their initial values")
    pos_lr_scale: float = _field(None, "learning rate of the positions relative to --lr", type_=float)
    width_rule: str = _field("auto", "auto: for hidden layers w times the paper's mean width (w > 1), alpha, beta "
                                     "and the density length per layer, the weights' lr (muP) and the spatial "
                                     "layers' starting scale follow the width (docs/width-rule.md); glorot: the same "
                                     "but every width starts from the initialiser's scale (the rule's earlier form, "
                                     "the records made before it changed); none: the flags as given", WIDTH_RULES)
    density_length: float = _field(1.0, "the density's length unit at the paper's width: V sums exp(-d / length) "
                                        "(1, the paper's)")
    cost_warmup: float = _field(None, "epochs over which the spatial loss ramps up linearly from 0 (0: off, the paper)",
                                type_=float)
    spatial_lr_scale: float = _field(1.0, "probes: the spatial layers' weights train at this times the lr the width "
                                          "rule gives them (1: the rule's)")
    output_pos_lr_scale: float = _field(1.0, "probes: the output layer's positions train at this times the positions' "
                                             "lr (1: the same; below 1 a late output sheet)")
    threads: int = _field(1, "torch and numba threads per process", runtime=True)
    data: str = _field("full", "full MNIST/Fashion-MNIST (downloaded when missing), the embedded subset, or auto "
                               "(full when its files are present, else the subset)", DATA_SOURCES)
    max_train: int = _field(0, "use only this many training images per dataset (0: all; probes)")
    val_size: int = _field(-1, "validation images held out of each training set (-1: 5000 on the full data, 400 "
                               "on the subset; 0: none, train on all), a fixed draw (spatialnet/data)")
    eval_split: str = _field("val", "what the read-out reads: the validation split (every choice of setting) or "
                                    "the test sets (final tables only)", data_mod.EVAL_SPLITS, runtime=True)
    weight_dtype: str = _field("float32", "dtype of the weights and biases (positions stay float32); bfloat16 "
                                          "needs the triton backend (a CUDA device); float32 master copies",
                               WEIGHT_DTYPES)
    eval_every: int = _field(0, "also evaluate and split every K epochs (0: at the end only)", runtime=True)
    compile: bool = _field(False, "torch.compile each step's loss, forward and backward", runtime=True)
    keep_epochs: list = _field([], "also keep a copy of the checkpoint after these epochs, as checkpoint-eN.pt "
                                   "(0: the initial state), comma-separated", runtime=True)

    def __post_init__(self):
        # the per-mode fields left at None take the mode's chosen setting (a bad mode is left to validate)
        for k, v in CHOSEN.get(self.mode, CHOSEN["concat"]).items():
            if getattr(self, k) is None:
                setattr(self, k, v)

    def validate(self) -> "TrainConfig":
        """Checks every field, a ValueError or TypeError naming it. Returns the config."""
        data_mod.check_mode(self.mode)
        check_transport_norm(self.transport_norm)
        check_density_norm(self.density_norm)
        for f in dataclasses.fields(self):
            choices, v = f.metadata["choices"], getattr(self, f.name)
            if choices and v not in choices:
                raise ValueError(f"{f.name} must be one of {choices}, got {v!r}")
            if f.metadata["type"] is bool and not isinstance(v, bool):
                raise TypeError(f"{f.name} must be a bool, got {v!r}")
            if f.metadata["type"] is int and (isinstance(v, bool) or not isinstance(v, int)):
                raise TypeError(f"{f.name} must be an int, got {v!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_train < 0 or self.eval_every < 0:
            raise ValueError(f"epochs and batch_size must be >= 1, max_train and eval_every >= 0, got "
                             f"epochs={self.epochs}, batch_size={self.batch_size}, max_train={self.max_train}, "
                             f"eval_every={self.eval_every}")
        self.tasks = list(check_tasks(self.tasks))
        if not isinstance(self.hidden, (list, tuple)) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty list of widths, got {self.hidden!r}")
        for h in self.hidden:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"hidden widths must be positive ints, got {self.hidden!r}")
        check_spatial_layers(list(self.spatial_layers), len(self.hidden) + 1)
        if not self.spatial_layers:
            raise ValueError("spatial_layers must name at least one layer (the split starts at the lowest)")
        for name, low, inclusive in (("lr", 0, False), ("alpha", 0, True), ("beta", 0, True),
                                     ("density_length", 0, False), ("spatial_lr_scale", 0, False),
                                     ("output_pos_lr_scale", 0, True),
                                     ("pos_lr_scale", 0, True), ("cost_warmup", 0, True)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not (
                    v >= low if inclusive else v > low):
                raise ValueError(f"{name} must be a finite number {'>=' if inclusive else '>'} {low}, got {v!r}")
        if not isinstance(self.keep_epochs, (list, tuple)) or any(
                isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in self.keep_epochs):
            raise ValueError(f"keep_epochs must be a list of epochs >= 0, got {self.keep_epochs!r}")
        if not 1 <= self.dim <= 3:
            raise ValueError(f"dim must be 1, 2 or 3 (coordinates per neuron), got {self.dim}")
        if self.val_size < -1:
            raise ValueError(f"val_size must be -1 (auto), 0 (none) or a count, got {self.val_size}")
        if self.eval_split == "val" and self.val_size == 0:
            raise ValueError("eval_split 'val' needs a validation split: val_size must not be 0")
        return self

    def replace(self, **changes) -> "TrainConfig":
        """A checked copy with ``changes`` (``dataclasses.replace``, then :meth:`validate`)."""
        return dataclasses.replace(self, **changes).validate()

    def for_mode(self, mode: str, given=()) -> "TrainConfig":
        """This config in ``mode``: the per-mode fields (``PER_MODE``) that are not ``given``
        (given by a flag or a preset) take that mode's chosen setting."""
        return self.replace(mode=mode, **{k: CHOSEN.get(mode, CHOSEN["concat"])[k] for k in PER_MODE
                                          if k not in given})

    @property
    def num_layers(self) -> int:
        return len(self.hidden) + 1

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def sizes(self) -> list[int]:
        return [data_mod.input_dim(self.mode, self.num_tasks), *self.hidden, self.num_tasks * data_mod.NUM_CLASSES]

    @property
    def split_layers(self) -> list[int]:
        """The layers split for evaluation: lowest spatial layer .. output, for both nets."""
        return list(range(min(self.spatial_layers), len(self.hidden) + 2))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"], d["spatial_layers"], d["tasks"] = list(self.hidden), list(self.spatial_layers), list(self.tasks)
        d["keep_epochs"] = list(self.keep_epochs)
        return d

    @property
    def width_factor(self) -> float:
        """w = the mean hidden width over the paper's (160), at least 1; 1 without the width rule."""
        if self.width_rule == "none":
            return 1.0
        return max(1.0, sum(self.hidden) / len(self.hidden) / PAPER_MEAN_HIDDEN)

    def per_layer_values(self) -> LayerValues:
        """The values training uses, per layer (:class:`LayerValues`): the width rule's for a net
        w times the paper's width (``width.py``, docs/width-rule.md), the flags' at w = 1 and with
        ``width_rule="none"``; the spatial layers' weights' lr times ``spatial_lr_scale``."""
        w = self.width_factor
        rule = width_rule(self.sizes, [h / w for h in self.hidden], self.spatial_layers, alpha=self.alpha,
                          beta=self.beta, lr=self.lr, pos_lr=self.lr * self.pos_lr_scale,
                          transport_norm=self.transport_norm, density_norm=self.density_norm, init=self.init,
                          density_length=self.density_length,
                          trained_init=self.width_rule == "auto" and self.net == "spatial")
        if self.net == "spatial" and self.spatial_lr_scale != 1.0:
            rule["lr"] = {l: v * (self.spatial_lr_scale if l in self.spatial_layers else 1.0)
                          for l, v in rule["lr"].items()}
        return LayerValues(width_factor=w, **rule)

    def identity(self) -> dict:
        """What the run computes: the config without the runtime keys (``RUNTIME_KEYS``), and for
        the regular net without the costs' settings (``COST_KEYS``), which it never reads."""
        skip = RUNTIME_KEYS + (COST_KEYS if self.net == "regular" else ())
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        if "val_size" not in d:  # made before the validation split existed: it trained on every image
            d = {**d, "val_size": 0, "eval_split": d.get("eval_split", "test")}
        # records made before the norms had one name each (results/ keeps them): read as they meant
        d = {**d, **{k: RECORD_NORM_NAMES[k].get(d[k], d[k]) for k in RECORD_NORM_NAMES if k in d}}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}")
        return cls(**d).validate()


# the norms' names in records written before each name had one meaning ("paper" meant per_out for
# the transport, per_pair for the density); only stored records are read through this
RECORD_NORM_NAMES = {"transport_norm": {"paper": "per_out", "mean": "per_connection"},
                     "density_norm": {"paper": "per_pair", "neuron": "per_neuron"}}
# what only the spatial net reads: the costs, the positions and their schedule
COST_KEYS = ("alpha", "beta", "pos_lr_scale", "spatial_lr_scale", "output_pos_lr_scale", "cost_warmup", "transport_norm", "density_norm", "density_length",
             "dim", "head_offset", "transport", "freeze_positions")
# how a run is executed, not what it computes: a checkpoint resumes whatever these are
RUNTIME_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["runtime"])

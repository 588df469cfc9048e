"""The typed options of ``tfmeta train``: one schema for the command-line
flags, YAML/JSON config files and ``--method-option``.

Every value goes through the same parser whichever way it came: booleans
accept ``true``/``false`` in any case (or YAML/JSON booleans) and nothing
else, integers and numbers must be numbers (``"10"`` from the command line,
``10`` or ``10.0`` from a file; ``2.5`` is not an integer), paths must be
non-empty strings, choices one of their names. Anything else is a
``UsageError`` naming the option and the value. ``tfmeta train --help`` is
generated from the same table.

No TensorFlow here: the command line validates everything before it builds
anything.
"""

import math
import pathlib

from tfmeta.errors import UsageError

SEED_MAX = 2**32 - 1   # NumPy's (and so keras.utils.set_random_seed's) range


# ------------------------------------------------------------------ kinds
class Kind:
    """How an option's value is written and checked."""

    what = "a value"    # for messages: "<name> must be <what>"
    metavar = "VALUE"

    def parse(self, name, value):
        raise NotImplementedError

    def fail(self, name, value):
        raise UsageError(f"{name} must be {self.what}, got {value!r}.")


class Bool(Kind):
    what, metavar = "true or false", "{true,false}"

    def parse(self, name, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.fail(name, value)


class Int(Kind):
    """An integer in ``[minimum, maximum]``."""

    metavar = "N"

    def __init__(self, minimum=1, maximum=None):
        self.minimum, self.maximum = minimum, maximum
        if minimum == 1 and maximum is None:
            self.what = "a positive integer"
        elif maximum is None:
            self.what = f"an integer >= {minimum}"
        else:
            self.what = f"an integer from {minimum} to {maximum}"

    def parse(self, name, value):
        number = value
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                self.fail(name, value)
        elif isinstance(value, float) and math.isfinite(value) \
                and value.is_integer():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int) \
                or number < self.minimum \
                or (self.maximum is not None and number > self.maximum):
            self.fail(name, number)
        return number


class _Number(Kind):
    """A finite number ``>= 0``, ``> 0`` unless ``allow_zero``."""

    metavar = "X"
    allow_zero = False

    def parse(self, name, value):
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                self.fail(name, value)
        if isinstance(number, bool) or not isinstance(number, (int, float)) \
                or not math.isfinite(number) or number < 0 \
                or (number == 0 and not self.allow_zero):
            self.fail(name, number)
        return float(number)


class PositiveNumber(_Number):
    what = "a positive number"


class NonNegativeNumber(_Number):
    what = "a number >= 0"
    allow_zero = True


class Names(Kind):
    """A non-empty list of names: ``a,b,c`` on the command line, a list
    (or that string) in a file; names checked later (e.g. Atari games)."""

    what, metavar = "a comma-separated list of names", "A,B"

    def parse(self, name, value):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, (list, tuple)) or not value or not all(
                isinstance(v, str) and v.strip() for v in value):
            self.fail(name, value)
        return [v.strip() for v in value]


class Choice(Kind):
    def __init__(self, choices, label=None):
        self.choices, self.label = sorted(choices), label
        self.metavar = "{" + ",".join(self.choices) + "}"
        self.what = f"one of {self.choices}"

    def parse(self, name, value):
        if isinstance(value, str) and value in self.choices:
            return value
        named = f" for option {name}" if self.label else ""
        raise UsageError(f"unknown {self.label or name} {value!r}{named}; "
                         f"choose from {self.choices}.")


class Path(Kind):
    what, metavar = "a path (a non-empty string)", "DIR"

    def parse(self, name, value):
        if isinstance(value, pathlib.PurePath):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.fail(name, value)
        return value


class Mapping(Kind):
    """``method_options``: checked per method by ``parse_method_options``."""

    what, metavar = "a mapping, e.g. {metric: energy}", "KEY=VALUE"

    def parse(self, name, value):
        if not isinstance(value, dict):
            self.fail(name, value)
        return dict(value)


class Cluster(Mapping):
    """``cluster``: TF_CONFIG's cluster, ``{"worker": ["host:port", ...]}``
    (other job names as well), as a multiworker run records it."""

    what = 'a cluster, e.g. {"worker": ["host:2222", ...]}'

    def parse(self, name, value):
        value = super().parse(name, value)
        for job, addresses in value.items():
            if not isinstance(job, str) or not isinstance(addresses, list) \
                    or not addresses or not all(
                        isinstance(a, str) and a.strip() for a in addresses):
                self.fail(name, value)
        return value


class Optional(Kind):
    """``kind`` or ``None`` (``null`` in a config file: "use the default")."""

    def __init__(self, kind):
        self.kind = kind
        self.what, self.metavar = kind.what, kind.metavar

    def parse(self, name, value):
        return None if value is None else self.kind.parse(name, value)


class Segments(Kind):
    """``checkpoint_every`` of a second-order method: a positive integer or
    ``sqrt`` (``tfmeta.MAML``)."""

    what, metavar = "a positive integer or sqrt", "{N,sqrt}"

    def parse(self, name, value):
        if isinstance(value, str) and value.strip() == "sqrt":
            return "sqrt"
        try:
            return Int().parse(name, value)
        except UsageError:
            self.fail(name, value)


# ----------------------------------------------------------------- schema
class Option:
    """One option: its kind, default and help (``flag=None``: no flag)."""

    def __init__(self, name, kind, default, help, flag=True):
        self.name, self.kind, self.default, self.help = name, kind, default, help
        self.flag = "--" + name.replace("_", "-") if flag else None

    def parse(self, value):
        return self.kind.parse(self.name, value)


METHOD_NAMES = ("leap", "reptile", "maml", "fomaml", "finetune", "scratch",
                "anil", "metasgd", "transfer")
# Methods ``tfmeta train`` runs in their RL form only (not the registry's
# CLI methods: tfmeta.WarpGrad needs warp layers no supervised family
# builds): warpgrad on maze is tfmeta.rl.RLWarpGrad's Warp-RNN agent.
RL_ONLY_METHODS = ("warpgrad",)
TASK_FAMILIES = ("sine", "omniglot", "cos-sin", "pendulum", "maze", "atari")
# Families that take only some methods: meta-transfer (``transfer``) runs
# on its own families, whose support and query differ (tfmeta.transfer);
# Atari games are RL tasks for Leap's A2C form (tfmeta.rl.RLLeap); with
# warpgrad, maze is Miconi's maze for the Warp-RNN (tfmeta.rl.RLWarpGrad).
# The other families take every method but ``transfer`` and warpgrad.
FAMILY_METHODS = {"cos-sin": ("transfer",), "pendulum": ("transfer",),
                  "maze": ("transfer", "warpgrad"), "atari": ("leap",)}
TRANSFER_FAMILIES = tuple(f for f, m in FAMILY_METHODS.items()
                          if "transfer" in m)
# (method, family) pairs that are another task than the family's own
# (warpgrad on maze: WarpGrad appendix I's maze, not the 2 x N mazes): the
# only options they take (besides method, tasks and strategy one) and their
# defaults, experiments/warpgrad_maze.py's Warp-RNN agent.
PAIR_OPTIONS = {("warpgrad", "maze"): (
    "steps", "seed", "checkpoint_every", "meta_lr", "meta_optimizer",
    "anneal", "inner_lr", "inner_optimizer", "envs", "updates",
    "deterministic")}
PAIR_DEFAULTS = {("warpgrad", "maze"): {
    "meta_optimizer": "adam", "meta_lr": 0.001, "inner_optimizer": "adam",
    "inner_lr": 0.001, "envs": 30, "updates": 30, "steps": 30}}
# Options that belong to some families or one method (refused elsewhere).
FAMILY_ONLY_OPTIONS = {
    "cos-sin": ("sigma",),
    "pendulum": ("sigma", "train_tasks"),
    "maze": ("width",),
    "atari": ("games", "envs", "updates", "eval_games", "eval_updates",
              "max_episode_frames"),
}
METHOD_ONLY_OPTIONS = {"transfer": ("encoder", "k")}
# Families whose methods have no supervised inner loop.
NO_INNER_LOOP = ("cos-sin", "pendulum", "maze", "atari")
# tfmeta.transfer.ENCODERS (tested to agree; no TensorFlow import here).
ENCODER_NAMES = ("context", "nonlinear", "linear", "mean", "max",
                 "transformer", "deep_kernel")
# Options of the methods with an inner loop, which ``transfer`` has not.
INNER_LOOP_OPTIONS = ("inner_steps", "eval_steps", "inner_lr",
                      "inner_optimizer", "inner_batch_size", "vectorize_tasks")
#: ``strategy``: one device, ``tf.distribute.MirroredStrategy`` (this
#: machine's GPUs) or ``MultiWorkerMirroredStrategy`` (TF_CONFIG's cluster).
STRATEGIES = ("one", "mirrored", "multiworker")
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}

OPTIONS = {o.name: o for o in [
    Option("method", Optional(Choice(METHOD_NAMES + RL_ONLY_METHODS)), None,
           "the meta-learning method", flag=False),
    Option("tasks", Choice(TASK_FAMILIES, "task family"), "sine", "task family"),
    Option("steps", Int(), 1000, "meta-steps"),
    Option("meta_batch", Int(), 5, "tasks per meta-step"),
    Option("inner_steps", Int(), 32, "adaptation steps in training"),
    Option("eval_steps", Int(), 32, "adaptation steps in evaluation"),
    Option("inner_lr", PositiveNumber(), 0.02,
           "task learning rate (warpgrad on maze: 0.001)"),
    Option("inner_optimizer", Choice(OPTIMIZERS), "sgd",
           "task optimizer (warpgrad on maze: adam)"),
    Option("inner_batch_size", Optional(Int()), None,
           "support minibatch per adaptation step, at most the support split"),
    Option("meta_lr", PositiveNumber(), 0.01, "outer learning rate"),
    Option("meta_optimizer", Choice(OPTIMIZERS), "sgd", "outer optimizer"),
    Option("anneal", Bool(), False,
           "anneal the outer learning rate linearly to 0"),
    Option("seed", Int(0, SEED_MAX), 0, "random seed"),
    Option("checkpoint_every", Optional(Int()), None,
           "meta-steps between checkpoints, a divisor of --steps (default: "
           "its largest divisor up to 100)"),
    Option("eval_every", Int(), 1,
           "checkpoint intervals between held-out evaluations"),
    Option("test_tasks", Int(), 100, "held-out tasks"),
    Option("data_dir", Optional(Path()), None,
           "data directory (default: $TFMETA_DATA or ../shared/data)"),
    Option("method_options", Mapping(), {},
           "method arguments", flag=False),
    Option("deterministic", Bool(), True,
           "deterministic TensorFlow ops (--no-deterministic is faster)"),
    Option("vectorize_tasks", Bool(), False,
           "batch the tasks of a meta-step (fast for small nets)"),
    Option("encoder", Optional(Choice(ENCODER_NAMES, "encoder")), None,
           "transfer only: the support encoder"),
    Option("k", Optional(Int()), None,
           "transfer only: the code size (default: the family's task "
           "dimension: 2 for cos-sin and pendulum, N/2 for maze)"),
    Option("sigma", NonNegativeNumber(), 0.0,
           "cos-sin and pendulum only: standard deviation of the support "
           "noise"),
    Option("train_tasks", Optional(Int()), None,
           "pendulum only: training tasks (L, g), simulated once (default "
           "100)"),
    Option("width", Optional(Int()), None,
           "maze only: the N of the 2 x N mazes, even (default 6; the "
           "paper: 6, 12, 24)"),
    Option("games", Optional(Names()), None,
           "atari only: the pretraining games"),
    Option("envs", Optional(Int()), None,
           "atari (and warpgrad on maze) only: environments per agent "
           "(warpgrad on maze: 30, episodes a batch)"),
    Option("updates", Optional(Int()), None,
           "atari (and warpgrad on maze) only: A2C updates per game per "
           "meta-step (warpgrad on maze: 30, task updates per warp update)"),
    Option("eval_games", Optional(Names()), None,
           "atari only: games the meta-learned encoder is evaluated on"),
    Option("eval_updates", Optional(Int()), None,
           "atari only: A2C updates per evaluation game"),
    Option("max_episode_frames", Optional(Int()), None,
           "atari only: cut episodes after this many frames (default: full "
           "games)"),
    Option("strategy", Choice(STRATEGIES, "strategy"), "one",
           "tf.distribute strategy: one device, mirrored (this machine's "
           "GPUs) or multiworker (the cluster of TF_CONFIG in the "
           "environment; docs/distributed.md)"),
    Option("cluster", Optional(Cluster()), None,
           "the multiworker cluster, recorded from TF_CONFIG", flag=False),
]}

DEFAULTS = {name: option.default for name, option in OPTIONS.items()}

# The papers' task-level settings where a family differs from the defaults
# (omniglot: Leap appendix, Table 3).
FAMILY_DEFAULTS = {
    "sine": {},
    "omniglot": {"inner_lr": 0.1, "inner_steps": 100, "eval_steps": 100,
                 "inner_batch_size": 20, "meta_lr": 0.1, "meta_batch": 20,
                 "test_tasks": 10},
    # experiments/transfer_cos_sin.py's small preset (docs/transfer.md).
    "cos-sin": {"meta_optimizer": "adam", "meta_lr": 0.001, "meta_batch": 10,
                "test_tasks": 200},
    # experiments/transfer_pendulum.py's and transfer_maze.py's small presets.
    "pendulum": {"meta_optimizer": "adam", "meta_lr": 0.001, "meta_batch": 10,
                 "train_tasks": 100},
    "maze": {"meta_optimizer": "adam", "meta_lr": 0.001, "meta_batch": 10,
             "width": 6},
    # experiments/atari_leap.py's small preset (Leap appendix F's agent).
    "atari": {"games": ["AirRaid", "UpNDown", "WizardOfWor", "Pong"],
              "meta_batch": 2, "meta_lr": 0.1, "steps": 3, "envs": 32,
              "updates": 150, "eval_games": ["Breakout"], "eval_updates": 100},
}

# Constructor arguments of each method that a config may set (the others
# are train options above). Leap's metrics are tfmeta.leap.METRICS (tested).
COMMON_METHOD_OPTIONS = {"parallel_tasks": Int()}
METHOD_OPTIONS = {
    "leap": {"metric": Choice(["energy", "length"]),
             "loss_in_manifold": Bool(), "stabilizer": Bool()},
    "reptile": {}, "maml": {"checkpoint_every": Optional(Segments())},
    "fomaml": {},
    "finetune": {"num_heads": Optional(Int())},
    "scratch": {},
    "anil": {"head": Optional(Int()), "first_order": Bool(),
             "checkpoint_every": Optional(Segments())},
    "metasgd": {"checkpoint_every": Optional(Segments())},
    "transfer": {"encoder_steps": Int(), "encoder_lr": PositiveNumber(),
                 "first_order": Bool(), "decoder_hidden": Int()},
}
# Methods without MetaLearner's common options (no task loop to parallelize).
NO_COMMON_OPTIONS = ("transfer",)


def method_options_help():
    """``--method-option`` help: every method's options and their kinds."""
    parts = []
    for method, options in METHOD_OPTIONS.items():
        if options:
            parts.append(method + ": " + ", ".join(
                f"{k}={kind.metavar}" for k, kind in options.items()))
    parts.append("any method but transfer: " + ", ".join(
        f"{k}={kind.metavar}" for k, kind in COMMON_METHOD_OPTIONS.items()))
    return "method argument KEY=VALUE (repeatable); " + "; ".join(parts)


def parse_method_options(method, options):
    """``options`` typed by ``method``'s schema; unknown keys refused."""
    schema = dict({} if method in NO_COMMON_OPTIONS + RL_ONLY_METHODS
                  else COMMON_METHOD_OPTIONS, **METHOD_OPTIONS.get(method, {}))
    out = {}
    for key, value in options.items():
        if key not in schema:
            hint = (f" ({key} is a train option: --{key.replace('_', '-')} "
                    f"or '{key}:' in a config file)" if key in OPTIONS else "")
            raise UsageError(f"bad method_options for {method}: unknown option "
                             f"{key!r}{hint}; {method} takes {sorted(schema)}.")
        try:
            out[key] = schema[key].parse(f"method option {key}", value)
        except UsageError as err:
            raise UsageError(f"bad method_options for {method}: {err}") from None
    return out


def parse_key_values(items):
    """``["k=v", ...]`` from ``--method-option`` as a dict of strings."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--method-option expects KEY=VALUE, got {item!r}.")
        out[key.strip()] = value
    return out


def check_file_options(data, source):
    """A config file's mapping: only known option names (values: ``resolve``)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {source} must hold a mapping of options, "
                         f"got {type(data).__name__}.")
    bad = sorted(str(k) for k in data if not isinstance(k, str))
    unknown = sorted(k for k in data if isinstance(k, str) and k not in OPTIONS)
    if bad or unknown:
        raise UsageError(f"config file {source} has unknown option(s) "
                         f"{bad + unknown}; known options: {sorted(OPTIONS)}.")
    return data


def resolve(file_options, cli_options):
    """Defaults < family defaults < config file < command line, each value
    typed by the schema; then the checks between options."""
    # A file's null is parsed too: "the default" for nullable options
    # (inner_batch_size: null), an error for the others (steps: null).
    typed = [{k: OPTIONS[k].parse(v) for k, v in file_options.items()
              if k != "method_options"},
             {k: OPTIONS[k].parse(v) for k, v in cli_options.items()
              if k != "method_options" and v is not None}]
    family = typed[1].get("tasks") or typed[0].get("tasks") or DEFAULTS["tasks"]
    method = typed[1].get("method") or typed[0].get("method")
    family_defaults = PAIR_DEFAULTS.get((method, family),
                                        FAMILY_DEFAULTS[family])
    config = {**DEFAULTS, **family_defaults, **typed[0], **typed[1]}
    config["method_options"] = {}
    if config["method"] is None:
        raise UsageError("no method given: tfmeta train METHOD (one of "
                         f"{sorted(METHOD_NAMES)}), or 'method:' in the config "
                         "file.")
    for layer in (file_options, cli_options):
        if "method_options" in layer and (layer is file_options or
                                          layer["method_options"] is not None):
            given = OPTIONS["method_options"].parse(layer["method_options"])
            config["method_options"].update(
                parse_method_options(config["method"], given))
    # "Given": set to other than the family's default (a stored config.json
    # holds every option, most at their defaults).
    base = {**DEFAULTS, **family_defaults}
    _check_method_and_family(config, {k for layer in typed for k, v in
                                      layer.items() if v != base[k]})
    steps, every = config["steps"], config["checkpoint_every"]
    if every is None:
        every = max(d for d in range(1, min(100, steps) + 1) if steps % d == 0)
    if steps % every:
        raise UsageError(f"steps ({steps}) must be a multiple of "
                         f"checkpoint_every ({every}).")
    config["checkpoint_every"] = every
    return config


def _check_method_and_family(config, given):
    """Methods and families go together (``FAMILY_METHODS``); options of
    another family or method are refused, not ignored."""
    method, family = config["method"], config["tasks"]
    allowed = FAMILY_METHODS.get(family)
    if allowed is None:
        allowed = tuple(m for m in METHOD_NAMES if m != "transfer")
    if method not in allowed:
        if method in RL_ONLY_METHODS:
            pairs = [f for m, f in PAIR_OPTIONS if m == method]
            raise UsageError(
                f"tfmeta train runs {method} on RL tasks only: --tasks "
                f"{' or '.join(pairs)}, not {family} (on supervised tasks "
                f"{method} is the Python API's, with warp layers).")
        if method == "transfer":
            raise UsageError(
                f"transfer needs a meta-transfer task family (support and "
                f"query from different families): {list(TRANSFER_FAMILIES)}, "
                f"not {family!r}.")
        what = ("meta-transfer tasks (support and query from different "
                "families)" if allowed[0] == "transfer" else "RL tasks")
        if len(allowed) > 1 and allowed[0] == "transfer":
            what += f", or RL tasks with {', '.join(allowed[1:])}"
        raise UsageError(
            f"{family} tasks are {what}: train them with "
            f"{' or '.join(allowed)}, not {method}.")
    if (method, family) in PAIR_OPTIONS:
        _check_pair(config, given)
        return
    owners = {}
    for owner, options in FAMILY_ONLY_OPTIONS.items():
        for option in options:
            owners.setdefault(option, []).append(owner)
    for option in sorted(given & set(owners)):
        if family not in owners[option]:
            raise UsageError(f"{option} apply to {' or '.join(owners[option])} "
                             f"tasks only, not to {family}.")
    for owner, options in METHOD_ONLY_OPTIONS.items():
        wrong = sorted(given & set(options)) if owner != method else []
        if wrong:
            raise UsageError(f"{', '.join(wrong)} apply to the {owner} method "
                             f"only, not to {method}.")
    if family in NO_INNER_LOOP:
        wrong = sorted(given & set(INNER_LOOP_OPTIONS))
        if wrong:
            raise UsageError(
                f"{', '.join(wrong)} do(es) not apply to {method} on {family} "
                "(no supervised inner loop: "
                + ("meta-transfer decodes the query learner)."
                   if method == "transfer" else
                   "the tasks are A2C agents; --updates sets their steps)."))
    if family == "atari" and config.get("strategy", "one") != "one":
        raise UsageError(
            f"strategy {config['strategy']} does not apply to {method} on "
            f"{family} yet: RLLeap steps Python environments eagerly "
            "(docs/distributed.md). Use --strategy one.")
    if method == "transfer":
        if config["encoder"] is None:
            raise UsageError(f"transfer needs --encoder (one of "
                             f"{list(ENCODER_NAMES)}).")
        if config["encoder"] == "deep_kernel" and config["k"] is not None:
            raise UsageError("the deep_kernel encoder has no latent code: k "
                             f"does not apply (got k={config['k']}).")
    for option in ("train_tasks", "width"):   # null: the family's default
        if family in owners[option] and config[option] is None:
            config[option] = FAMILY_DEFAULTS[family][option]
    if family == "maze" and (config["width"] < 2 or config["width"] % 2):
        raise UsageError(f"width must be an even number >= 2 (the N of a 2 x "
                         f"N maze; the paper uses 6, 12, 24), got "
                         f"{config['width']}.")
    if family == "atari":
        common = sorted(set(config["method_options"]) & set(
            COMMON_METHOD_OPTIONS))
        if common:
            raise UsageError(f"bad method_options for leap on atari: "
                             f"{', '.join(common)} does not apply to RL "
                             "tasks.")


def _check_pair(config, given):
    """A (method, family) of ``PAIR_OPTIONS``: its options only, one
    device."""
    method, family = config["method"], config["tasks"]
    takes = PAIR_OPTIONS[(method, family)]
    wrong = sorted(given - set(takes) - {"method", "tasks", "method_options",
                                         "cluster", "strategy"})
    if wrong:
        raise UsageError(
            f"{', '.join(wrong)} do(es) not apply to {method} on {family}; "
            f"it takes {', '.join(takes)}.")
    if config.get("strategy", "one") != "one":
        raise UsageError(
            f"strategy {config['strategy']} does not apply to {method} on "
            f"{family}: its meta-step steps Python environments eagerly. Use "
            "--strategy one.")


def default_text(name):
    """A flag's default for ``--help``, with the families that differ."""
    default = DEFAULTS[name]
    text = "all" if name == "inner_batch_size" and default is None else default
    if isinstance(text, bool):
        text = str(text).lower()
    others = [f"{family}: {values[name]}" for family, values
              in FAMILY_DEFAULTS.items() if name in values]
    if default is None and name != "inner_batch_size":
        return ""
    return f" (default {text}" + "".join(f"; {o}" for o in others) + ")"


# ------------------------------------------------------------------ files
def _yaml_loader():
    """PyYAML's safe loader with YAML 1.2 booleans: ``true``/``false`` only
    (YAML 1.1 also reads ``yes``, ``no``, ``on``, ``off`` as booleans, so
    ``anneal: no`` would be a value the user did not write)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    bool_tag = "tag:yaml.org,2002:bool"
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"))
    return Loader


def load_file(path):
    """Options from a YAML or JSON file: a mapping of known option names
    (their values are typed by ``resolve``)."""
    import json

    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UsageError(f"cannot read config file {path}: {reason}.") from err
    is_json = path.suffix.lower() == ".json"
    try:
        if is_json:
            data = json.loads(text)
        else:
            import yaml
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - safe
    except Exception as err:  # noqa: BLE001 - parser errors vary
        raise UsageError(f"config file {path} is not valid "
                         f"{'JSON' if is_json else 'YAML'}: {err}") from err
    return check_file_options(data, path)

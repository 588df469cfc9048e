"""The typed option schema (tfmeta/config.py) shared by the command-line
flags, YAML/JSON config files and --method-option, and fuzzing of the
config loader and the command line: every bad value ends in a usage error
naming the option, never a traceback, never a value the user did not write."""

import inspect
import json
import math
import string

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tfmeta
from tfmeta import cli
from tfmeta import config as schema
from tfmeta.errors import UsageError


def resolve(file_options=None, **cli_options):
    return schema.resolve({"method": "leap", **(file_options or {})},
                          cli_options)


def yaml_options(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return schema.load_file(path)


# ----------------------------------------------------------------- booleans
@pytest.mark.parametrize("text,value", [
    ("anneal: false", False), ("anneal: 'false'", False),
    ("anneal: \"FALSE\"", False), ("anneal: True", True),
    ("anneal: 'tRuE'", True), ("vectorize_tasks: true", True),
    ("deterministic: false", False),
])
def test_yaml_booleans_are_what_the_user_wrote(tmp_path, text, value):
    config = resolve(yaml_options(tmp_path, text))
    assert config[text.split(":")[0]] is value


@pytest.mark.parametrize("text", [
    "anneal: yes", "anneal: no", "anneal: on", "anneal: 1", "anneal: 'maybe'",
    "deterministic: 0", "vectorize_tasks: []", "anneal: null",
])
def test_other_booleans_are_refused(tmp_path, text):
    option = text.split(":")[0]
    with pytest.raises(UsageError, match=f"{option} must be true or false"):
        resolve(yaml_options(tmp_path, text))


def test_method_option_booleans_are_typed():
    options = cli.schema.parse_key_values(["stabilizer=False",
                                           "loss_in_manifold=TRUE"])
    config = resolve(method_options=options)
    assert config["method_options"] == {"stabilizer": False,
                                        "loss_in_manifold": True}
    with pytest.raises(UsageError, match="stabilizer must be true or false, "
                                         "got 'maybe'"):
        resolve(method_options={"stabilizer": "maybe"})


# ---------------------------------------------------- numbers, paths, choices
@pytest.mark.parametrize("options,message", [
    ({"seed": -1}, "seed must be an integer from 0 to 4294967295, got -1"),
    ({"seed": 2**32}, "seed must be an integer from 0 to 4294967295"),
    ({"seed": "1.5"}, "seed must be an integer"),
    ({"steps": 2.5}, "steps must be a positive integer, got 2.5"),
    ({"steps": True}, "steps must be a positive integer, got True"),
    ({"steps": None}, "steps must be a positive integer, got None"),
    ({"inner_lr": "fast"}, "inner_lr must be a positive number, got 'fast'"),
    ({"inner_lr": float("inf")}, "inner_lr must be a positive number, got inf"),
    ({"data_dir": 5}, "data_dir must be a path (a non-empty string), got 5"),
    ({"data_dir": ""}, "data_dir must be a path"),
    ({"method": ["leap"]}, "unknown method ['leap']"),
    ({"tasks": "moons"}, "unknown task family 'moons'"),
    ({"meta_optimizer": "adamw"}, "unknown meta_optimizer 'adamw'"),
    ({"method_options": ["metric"]}, "method_options must be a mapping"),
    ({"method_options": None}, "method_options must be a mapping"),
    ({"method_options": {"metric": "lenght"}},
     "unknown method option metric 'lenght'"),
    ({"method_options": {"inner_steps": 3}}, "inner_steps is a train option"),
    ({"method_options": {"num_heads": 2}}, "unknown option 'num_heads'"),
])
def test_bad_values_are_refused_naming_the_option(options, message):
    with pytest.raises(UsageError) as err:
        resolve(options)
    assert message in str(err.value)


def test_good_values_are_typed():
    config = resolve({"steps": "40", "seed": 2**32 - 1, "inner_lr": "1e-3",
                      "meta_lr": 1, "data_dir": "data", "inner_batch_size": None,
                      "checkpoint_every": 20.0})
    assert (config["steps"], config["seed"]) == (40, 2**32 - 1)
    assert config["inner_lr"] == 1e-3 and isinstance(config["meta_lr"], float)
    assert config["data_dir"] == "data" and config["checkpoint_every"] == 20
    assert type(config["checkpoint_every"]) is int
    finetune = schema.resolve({"method": "finetune",
                               "method_options": {"num_heads": "3"}}, {})
    assert finetune["method_options"] == {"num_heads": 3}


@pytest.mark.parametrize("text,suffix,message", [
    ("[1, 2]", ".json", "must hold a mapping of options, got list"),
    ("method: [leap]\n", ".yaml", "unknown method ['leap']"),
    ("7: 1\n", ".yaml", "unknown option(s) ['7']"),
])
def test_config_files_of_the_wrong_shape(tmp_path, text, suffix, message):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        schema.resolve(schema.load_file(path), {})
    assert message in str(err.value)


# ---------------------------------------------- the schema and the code agree
def test_schema_matches_the_methods_and_their_constructors():
    cli_methods = tfmeta.registry.methods(cli_only=True)
    assert set(schema.METHOD_NAMES) == set(cli_methods)
    assert set(schema.METHOD_OPTIONS) == set(cli_methods)
    assert schema.METHOD_OPTIONS["leap"]["metric"].choices == sorted(
        tfmeta.leap.METRICS)
    base = inspect.signature(tfmeta.MetaLearner.__init__).parameters
    for method, options in schema.METHOD_OPTIONS.items():
        cls = cli_methods[method].cls
        params = inspect.signature(cls.__init__).parameters
        for name in list(options) + list(schema.COMMON_METHOD_OPTIONS):
            assert name in params or name in base, (method, name)


def test_help_is_generated_from_the_schema():
    text = cli.parser()._subparsers._group_actions[0].choices[
        "train"].format_help()
    text = " ".join(text.split())
    for name, option in schema.OPTIONS.items():
        if option.flag:
            assert option.flag in text, name
            assert option.help.split()[0] in text, name
    assert "--no-anneal" in text and "(default 1000; atari: 3)" in text
    assert "stabilizer={true,false}" in text and "omniglot: 100" in text


# ------------------------------------------------------------------ fuzzing
SCALARS = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(string.printable, max_size=8)
           | st.sampled_from(["true", "False", "yes", "1e3", "10", "-1", "nan",
                              "leap", "sine", "adam", " 5 ", ""]))
VALUES = SCALARS | st.lists(SCALARS, max_size=2) | st.dictionaries(
    st.sampled_from(["metric", "stabilizer", "num_heads", "colour"]), SCALARS,
    max_size=2)
KEYS = st.sampled_from(sorted(schema.OPTIONS) + ["stepz", "out", "Steps"])


def expected(name, given):
    """What a value the user wrote means, independent of the parser; raises
    ``LookupError`` where it has no meaning for that option."""
    kind = schema.OPTIONS[name].kind
    if given is None and isinstance(kind, schema.Optional):
        return None
    kind = getattr(kind, "kind", kind)
    if isinstance(kind, schema.Bool):
        if isinstance(given, bool):
            return given
        if isinstance(given, str) and given.strip().lower() in ("true", "false"):
            return given.strip().lower() == "true"
    elif isinstance(kind, schema.Int):
        if isinstance(given, str):
            try:
                given = int(given)
            except ValueError:
                raise LookupError from None
        if isinstance(given, float) and given.is_integer():
            given = int(given)
        if type(given) is int and kind.minimum <= given <= (kind.maximum or given):
            return given
    elif isinstance(kind, (schema.PositiveNumber, schema.NonNegativeNumber)):
        try:
            value = float(given) if isinstance(given, (str, int, float)) \
                and not isinstance(given, bool) else None
        except ValueError:
            value = None
        zero_ok = isinstance(kind, schema.NonNegativeNumber)
        if value is not None and math.isfinite(value) and (
                value > 0 or (zero_ok and value == 0)):
            return value
    elif isinstance(kind, schema.Names):
        names = given.split(",") if isinstance(given, str) else given
        if isinstance(names, (list, tuple)) and names and all(
                isinstance(n, str) and n.strip() for n in names):
            return [n.strip() for n in names]
    elif isinstance(kind, (schema.Choice, schema.Path)):
        if isinstance(given, str) and given.strip() and (
                isinstance(kind, schema.Path) or given in kind.choices):
            return given
    elif isinstance(kind, schema.Mapping):
        return given  # checked per method below
    raise LookupError


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=5), st.sampled_from([".yaml", ".json"]))
def test_fuzz_config_files(tmp_path_factory, options, suffix):
    """A generated config file: a UsageError that names an option it holds,
    or a config in which every option it holds has the value written."""
    path = tmp_path_factory.mktemp("fuzz") / f"config{suffix}"
    options = {"method": "leap", **options}
    try:
        text = json.dumps(options) if suffix == ".json" else yaml.safe_dump(options)
    except ValueError:
        return  # NaN in JSON etc.: not a file a user can write
    path.write_text(text)
    try:
        loaded = schema.load_file(path)
        config = schema.resolve(loaded, {})
    except UsageError as err:
        message = str(err)
        assert "\n" not in message
        named = [k for k in options if k != "method" or options[k] != "leap"]
        assert any(str(k) in message for k in named), message
        return
    for name, given in loaded.items():
        if name == "method_options" or (name == "checkpoint_every"
                                        and given is None):
            continue  # null: the default, the largest divisor of steps <= 100
        assert config[name] == expected(name, given), (name, given)
    if "checkpoint_every" not in loaded or loaded["checkpoint_every"] is None:
        assert config["steps"] % config["checkpoint_every"] == 0


FLAGS = [o for o in schema.OPTIONS.values() if o.flag
         and not isinstance(o.kind, schema.Bool)]


class Reached(Exception):
    """The command got past validation (build() is where work would start)."""


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FLAGS),
                          st.text(string.printable, max_size=6)
                          | st.sampled_from(["0", "-1", "3", "20", "nan", "1e-2",
                                             "4294967296", "sgd", "sine"])),
                min_size=1, max_size=4),
       st.lists(st.sampled_from(["metric=energy", "metric=lenght",
                                 "stabilizer=False", "stabilizer=maybe",
                                 "colour=1", "metric", "=1",
                                 "parallel_tasks=0"]), max_size=2))
@example(flags=[(schema.OPTIONS["steps"], "20"), (schema.OPTIONS["seed"], "7")],
         method_options=["stabilizer=False"])
def test_fuzz_command_line(tmp_path, monkeypatch, capsys, flags, method_options):
    """Generated ``tfmeta train`` flags: exit 2 with one line naming the
    problem, or validation passes with exactly the values given."""
    seen = {}

    def build(config):
        seen.update(config)
        raise Reached

    monkeypatch.setattr(cli, "build", build)
    argv = ["train", "leap", "--out", str(tmp_path / "run")]
    for option, value in flags:
        argv += [f"{option.flag}={value}"]
    for item in method_options:
        argv += ["--method-option", item]
    try:
        code = cli.main(argv)
    except Reached:
        given = {}
        for option, value in flags:
            given[option.name] = value  # the last one wins, as in argparse
        for name, value in given.items():
            assert seen[name] == expected(name, value), (name, value)
        if "stabilizer=False" in method_options and \
                "stabilizer=maybe" not in method_options:
            assert seen["method_options"]["stabilizer"] is False
        assert not (tmp_path / "run").exists()
        return
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT, err
    assert err.count("\n") == 1 and err.startswith("tfmeta train: error:"), err
    assert not (tmp_path / "run").exists()

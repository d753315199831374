"""configurator.py: typed values (one path for the CLI, presets, JSON and Python), list keys, presets in a
private namespace, routing of keys to dataclasses, unknown keys and their suggestions; and that every
train.py preset parses with every scheme."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from configurator import Config, make, parse_config, split_list
from model import GPT, ModelConfig
from positional import POS_ENCODINGS
from training import TrainConfig

CONFIG = Path(__file__).resolve().parent.parent / "config"
# train.py's presets (compare.py's, also in config/, add keys of its own)
TRAIN_PRESETS = ("gpt2_124m", "shakespeare_char_cpu", "shakespeare_char", "book_ch05", "llama_cpu")
PRESETS = [CONFIG / f"{name}.py" for name in TRAIN_PRESETS]


@dataclasses.dataclass(frozen=True)
class Knobs(Config):
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    maybe: float | None = None
    table: dict | None = None
    lengths: tuple[float, ...] = (1.0, 2.0)
    names: tuple[str, ...] = ()


def parse(*argv):
    return parse_config(list(argv), Knobs)[0]


@pytest.mark.parametrize(
    "arg, field, expected",
    [
        ("--count=5e3", "count", 5000),
        ("--count=-2", "count", -2),
        ("--rate=3e-4", "rate", 3e-4),
        ("--rate=2", "rate", 2.0),
        ("--flag=true", "flag", True),
        ("--flag=False", "flag", False),
        ("--flag=1", "flag", True),
        ("--flag=no", "flag", False),
        ("--flag", "flag", True),
        ("--name=a=b", "name", "a=b"),
        ("--maybe=none", "maybe", None),
        ("--maybe=0.25", "maybe", 0.25),
        ('--table={"rope_type": "linear", "factor": 2}', "table", {"rope_type": "linear", "factor": 2}),
        ("--table=None", "table", None),
        ("--lengths=1,1.5,8", "lengths", (1.0, 1.5, 8.0)),
        ("--lengths=[2, 4]", "lengths", (2.0, 4.0)),
        ("--names=", "names", ()),
        ("--names=rope:rope_nope_layers=[0,3],alibi", "names", ("rope:rope_nope_layers=[0,3]", "alibi")),
        ('--names=["a,b", "c"]', "names", ("a,b", "c")),
    ],
)
def test_cli_values_are_coerced_by_declared_type(arg, field, expected):
    value = getattr(parse(arg), field)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "arg",
    [
        "--count=5.5",
        "--count=ten",
        "--flag=maybe",
        "--rate=fast",
        "--table=[1, 2]",
        "--table={bad",
        "--count",
        "--lengths=1,x",
        "--lengths=[1, [2]]",
    ],
)
def test_bad_cli_values_raise(arg):
    with pytest.raises(ValueError, match=r"count|flag|rate|table|lengths"):
        parse(arg)


def test_a_huge_integer_is_one_short_line_not_pythons_int_string_limit():
    """A 5000-digit value (a key held down) is named shortened, never through Python's 4300-digit error."""
    with pytest.raises(ValueError, match=r"count=.*is not a valid int") as err:
        parse("--count=" + "7" * 5000)
    assert "4300" not in str(err.value) and len(str(err.value)) < 300


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    with pytest.raises(ValueError, match=r"'cuont'.*command line.*did you mean --count\?"):
        parse("--cuont=3")
    preset = tmp_path / "p.py"
    preset.write_text("max_iter = 10\n")
    with pytest.raises(ValueError, match=r"'max_iter'.*p\.py.*did you mean --max_iters\?"):
        parse_config([str(preset)], ModelConfig, TrainConfig)
    with pytest.raises(ValueError, match="valid keys"):
        parse("--zzzzzz=1")


def test_preset_file_private_namespace_and_overrides(tmp_path):
    preset = tmp_path / "p.py"
    preset.write_text(
        "import math\n_scale = 2\ncount = 3 * _scale\nrate = math.pi\nmaybe = 5e3\nname = 'file'\n"
    )
    knobs = parse(str(preset), "--name=cli")
    assert knobs == Knobs(count=6, rate=np.pi, maybe=5000.0, name="cli")
    assert "count" not in globals()  # run in its own namespace, not ours


def test_preset_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        parse(str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match="unexpected argument"):
        parse("--count=1", "stray")
    preset = tmp_path / "p.py"
    preset.write_text("count = 2.5\n")
    with pytest.raises(ValueError, match=r"count=2\.5"):
        parse(str(preset))


def test_keys_are_routed_to_the_dataclass_that_declares_them():
    model_cfg, train_cfg = parse_config(
        ["--n_layer=3", "--pos_enc=alibi", "--max_iters=5e3", "--compile=false"], ModelConfig, TrainConfig
    )
    assert (model_cfg.n_layer, model_cfg.pos_enc) == (3, "alibi")
    assert (train_cfg.max_iters, train_cfg.compile) == (5000, False)
    # validation errors of the dataclasses themselves come through as ValueError
    with pytest.raises(ValueError, match="rope_base"):
        parse_config(["--pos_enc=alibi", "--rope_base=500"], ModelConfig, TrainConfig)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
@pytest.mark.parametrize("pos_enc", sorted(POS_ENCODINGS))
def test_every_preset_takes_every_pos_enc(preset, pos_enc):
    model_cfg, train_cfg = parse_config([str(preset), f"--pos_enc={pos_enc}"], ModelConfig, TrainConfig)
    assert model_cfg.pos_enc == pos_enc and train_cfg.max_iters > 0


def test_nanogpt_cpu_preset_settings():
    model_cfg, cfg = parse_config([str(CONFIG / "shakespeare_char_cpu.py")], ModelConfig, TrainConfig)
    assert (model_cfg.block_size, model_cfg.n_layer, model_cfg.n_head, model_cfg.n_embd) == (64, 4, 4, 128)
    assert (model_cfg.dropout, cfg.batch_size, cfg.eval_iters) == (0.0, 12, 20)
    assert (cfg.max_iters, cfg.lr_decay_iters, cfg.learning_rate, cfg.beta2) == (2000, 2000, 1e-3, 0.99)
    assert (cfg.dataset, cfg.tokenizer) == ("shakespeare", "char")


def test_presets_can_be_refused():
    with pytest.raises(ValueError, match=r"unexpected argument 'out/run': use --key=value"):
        parse_config(["out/run"], Knobs, presets=False)


def test_a_broken_preset_names_its_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("count = 2\nrate = (\n")
    with pytest.raises(ValueError, match=r"preset .*bad\.py, line 2: syntax error"):
        parse(str(bad))
    bad.write_text("count = 2\nrate = 1 / 0\n")
    with pytest.raises(ValueError, match=r"preset .*bad\.py, line 2: ZeroDivisionError"):
        parse(str(bad))


def test_book_ch05_preset_is_the_books_gpt_124m_run():
    model_cfg, cfg = parse_config([str(CONFIG / "book_ch05.py")], ModelConfig, TrainConfig)
    assert (model_cfg.n_layer, model_cfg.n_head, model_cfg.n_embd, model_cfg.block_size) == (12, 12, 768, 256)
    assert (model_cfg.dropout, model_cfg.pos_enc, model_cfg.tie_embeddings) == (0.1, "learned", False)
    assert (model_cfg.init, model_cfg.gelu, cfg.batch_order) == ("torch", "tanh", "epochs")
    assert (cfg.batch_size, cfg.max_iters, cfg.learning_rate, cfg.min_lr) == (2, 90, 4e-4, 4e-4)
    assert (cfg.weight_decay, cfg.warmup_iters, cfg.grad_clip, cfg.eval_interval) == (0.1, 0, 0.0, 5)
    assert (cfg.eval_iters, cfg.seed, cfg.dataset, cfg.tokenizer) == (5, 123, "verdict", "gpt2")
    model = GPT(dataclasses.replace(model_cfg, vocab_size=50257))
    # the book's 163,009,536 at context 1024 is 162,419,712 at 256; ours adds the padded vocabulary rows of
    # wte and lm_head (47 x 768 x 2) and the q, k, v biases the book leaves out (12 x 3 x 768)
    assert sum(p.numel() for p in model.parameters()) == 162_419_712 + 47 * 768 * 2 + 12 * 3 * 768


def test_one_path_for_every_value_wherever_it_comes_from():
    """Python code, JSON (a checkpoint, task_overrides) and the command line all coerce and validate alike."""
    assert Knobs(count="5e3", flag="yes", lengths=[1, "2.5"]) == parse(
        "--count=5e3", "--flag=yes", "--lengths=1,2.5"
    )
    assert make(Knobs, {"count": 5000.0}, "a dict").count == 5000
    with pytest.raises(ValueError, match=r"count=5\.5 is not a valid int"):
        Knobs(count=5.5)
    with pytest.raises(
        ValueError, match=r"unknown config key 'cuont' in a checkpoint; did you mean --count\?"
    ):
        make(Knobs, {"cuont": 1}, "a checkpoint")
    with pytest.raises(ValueError, match="name=7 is not a valid str"):
        make(Knobs, {"name": 7}, "task_overrides")


def test_the_names_people_type_get_the_key_they_mean(tmp_path):
    for typed, meant in (("lr", "learning_rate"), ("emb_dim", "n_embd"), ("context_length", "block_size")):
        with pytest.raises(ValueError, match=f"did you mean --{meant}\\?"):
            parse_config([f"--{typed}=1"], ModelConfig, TrainConfig)
    with pytest.raises(ValueError, match=r"did you mean --pos_enc=none\?"):
        ModelConfig(pos_enc="nope")
    with pytest.raises(ValueError, match=r"did you mean --pos_enc=rope\?"):
        ModelConfig(pos_enc="RoPE")
    with pytest.raises(
        ValueError,
        match=r"preset file 'shakespeare_char_cpu' not found; did you mean config/"
        r"shakespeare_char_cpu\.py\?",
    ):
        parse_config(["shakespeare_char_cpu"], ModelConfig, TrainConfig)
    with pytest.raises(ValueError, match=r"did you mean config/ablation_cpu\.py\?"):
        parse_config(["config/ablaton_cpu.py"], ModelConfig, TrainConfig)


def test_split_list_keeps_brackets_braces_and_quotes_together():
    text = 'rope:rope_scaling={"rope_type":"linear","factor":2},rope:rope_nope_layers=[0,3], alibi ,'
    assert split_list(text) == [
        'rope:rope_scaling={"rope_type":"linear","factor":2}',
        "rope:rope_nope_layers=[0,3]",
        "alibi",
    ]
    assert split_list('rope:rope_scaling={"a":1}:qk_norm=true', ":") == [
        "rope",
        'rope_scaling={"a":1}',
        "qk_norm=true",
    ]

"""grid.py: entries and their knobs (model and train keys), typed task_overrides, the presets' grids, the runs
of a grid and of its tuning phase, and the learning rate each entry gets."""

import dataclasses

import pytest
from helpers import REPO

import grid
from configurator import parse_config
from data.sources import load_source
from evaluate import EvalConfig
from model import ModelConfig
from positional import POS_ENCODINGS
from training import TrainConfig

L = 16


def model_of(base: ModelConfig, entry: str) -> ModelConfig:
    return grid.entry_configs(base, TrainConfig(), entry)[0]


def test_scheme_config_keeps_knobs_for_their_scheme_only():
    base = ModelConfig(pos_enc="rope", rope_base=500.0, block_size=L, n_layer=1, n_head=2, n_embd=16)
    assert model_of(base, "alibi").rope_base is None
    assert model_of(base, "rope").rope_base == 500.0
    cfg = model_of(base, "rope:rope_dim=4")
    assert (cfg.rope_dim, cfg.rope_base) == (4, 500.0)
    assert grid.label_of(cfg) == "rope:rope_base=500.0:rope_dim=4"
    cfg = model_of(base, "rope:qk_norm=true:rope_nope_interval=1:random_positions=64")
    label = "rope:rope_base=500.0:rope_nope_interval=1:qk_norm=true:random_positions=64"
    assert grid.label_of(cfg) == label
    assert grid.label_of(model_of(base, "none:qk_norm=true")) == "none:qk_norm=true"


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "config").glob("ablation_*.py")))
def test_presets_parse(preset):
    types_ = (ModelConfig, TrainConfig, EvalConfig, grid.CompareConfig)
    model_cfg, train_cfg, ev, cmp = parse_config([str(REPO / "config" / preset)], *types_)
    assert cmp.n_seeds >= 2 and train_cfg.max_iters == train_cfg.lr_decay_iters
    assert ev.stride == model_cfg.block_size
    schemes = [model_of(model_cfg, e).pos_enc for e in cmp.entries()]  # every entry builds
    later = {"fox", "stickbreaking", "pope"}  # config/ablation_2025.py's, with the options of 2025-26
    if preset in ("ablation_cpu.py", "ablation_quick.py"):  # the comparison of schemes: all but xpos
        assert set(schemes) == set(POS_ENCODINGS) - {"xpos"} - later
    if preset == "ablation_2025.py":
        assert later <= set(schemes)


@pytest.mark.parametrize("preset", ["addition.py", "addition_hints.py", "tasks_cpu.py", "tasks_quick.py"])
def test_task_presets_parse_and_every_entry_has_its_source(preset):
    """Every entry of a task preset builds, with its own task options, a source its model can take."""
    types_ = (ModelConfig, TrainConfig, EvalConfig, grid.CompareConfig)
    model_cfg, train_cfg, _, cmp = parse_config([str(REPO / "config" / preset)], *types_)
    for task in train_cfg.task_names():
        tcfg = dataclasses.replace(train_cfg, dataset=f"task:{task}")
        for entry in cmp.entries():
            mcfg, entry_cfg = grid.entry_configs(model_cfg, tcfg, entry)
            source = load_source(entry_cfg, mcfg)
            assert source.n_train < source.n_eval and mcfg.pos_enc in POS_ENCODINGS


def test_the_default_grid_is_every_registered_scheme():
    assert sorted(grid.CompareConfig().entries()) == sorted(POS_ENCODINGS)


def test_values_of_every_origin_pass_the_same_checks():
    """task_overrides and grid entries are typed like the command line."""
    cmp = grid.CompareConfig(task_overrides={"copy": {"compile": "no", "max_iters": 1e3}})
    assert cmp.task_overrides == {"copy": {"compile": False, "max_iters": 1000}}
    for bad, match in [
        ({"copy": {"data_dir": 7}}, "data_dir'\\]=7 is not a valid str"),
        ({"copy": {"learning_rate": "abc"}}, "learning_rate'\\]='abc' is not a valid float"),
        ({"copy": {"learning_rate": None}}, "is not a valid float"),
        ({"copy": {"tensorboard_dir": 5}}, "tensorboard_dir'\\]=5"),
        ({"copy": {"max_iter": 5}}, "did you mean --max_iters"),
        ({"kopy": {}}, "task_overrides maps tasks"),
    ]:
        with pytest.raises(ValueError, match=match):
            grid.CompareConfig(task_overrides=bad)
    entries = 'rope:rope_nope_layers=[0,1],rope:rope_scaling={"rope_type":"linear","factor":2},alibi'
    (cmp,) = parse_config([f"--schemes={entries}"], grid.CompareConfig)
    base = ModelConfig(n_layer=2, block_size=L)
    assert model_of(base, cmp.schemes[0]).rope_nope_layers == (0, 1)
    assert model_of(base, cmp.schemes[1]).rope_scaling == {"rope_type": "linear", "factor": 2}


def test_entries_set_train_keys_and_keep_the_min_lr_ratio():
    model, train = grid.entry_configs(
        ModelConfig(), TrainConfig(learning_rate=1e-3, min_lr=1e-4), "t5:learning_rate=3e-3:pos_lr_mult=10"
    )
    assert (model.pos_enc, train.learning_rate, train.pos_lr_mult) == ("t5", 3e-3, 10.0)
    assert train.min_lr == pytest.approx(3e-4)
    _, short = grid.entry_configs(ModelConfig(), TrainConfig(), "rope:max_iters=500:lr_decay_iters=500")
    assert (short.max_iters, short.lr_decay_iters) == (500, 500)  # an entry's own budget
    with pytest.raises(ValueError, match="lr_decay_iters"):  # validated as any other value
        grid.entry_configs(ModelConfig(), TrainConfig(warmup_iters=100), "rope:lr_decay_iters=50")
    with pytest.raises(ValueError, match="drop one of the two"):
        grid.CompareConfig(schemes=("rope:learning_rate=1e-3",), tune_lrs=(1e-3, 3e-3))
    with pytest.raises(ValueError, match="reference='alibi' is not one of the entries"):
        grid.CompareConfig(schemes=("rope", "none"), reference="alibi")


def test_the_tuning_phase_and_the_grid_are_separate_runs_on_separate_seeds(tmp_path):
    cmp = grid.CompareConfig(schemes=("rope", "alibi"), n_seeds=2, tune_lrs=(1e-3, 3e-3), budgets=(100, 200))
    train = TrainConfig(out_dir=str(tmp_path), learning_rate=1e-3, min_lr=1e-4)
    tuning = grid.plan_runs(ModelConfig(), train, EvalConfig(), cmp, tuning=True)
    assert [j.name for j in tuning] == [
        "rope-lr0.001-seed0",
        "rope-lr0.003-seed0",
        "alibi-lr0.001-seed0",
        "alibi-lr0.003-seed0",
    ]
    assert {j.train.seed for j in tuning} == {1337 + 1000} and tuning[1].train.min_lr == pytest.approx(3e-4)
    runs = grid.plan_runs(ModelConfig(), train, EvalConfig(), cmp, chosen={"rope": 3e-3, "alibi": 1e-3})
    assert [(j.label, j.train.max_iters, j.train.lr_decay_iters, j.train.seed) for j in runs[:4]] == [
        ("rope@100", 100, 100, 1337),
        ("rope@100", 100, 100, 1338),
        ("rope@200", 200, 200, 1337),
        ("rope@200", 200, 200, 1338),
    ]
    assert {j.train.learning_rate for j in runs if j.label.startswith("rope")} == {3e-3}
    assert not {j.train.seed for j in tuning} & {j.train.seed for j in runs}


def test_each_entry_gets_the_rate_of_its_lowest_mean_tuning_loss():
    def rec(label, lr, loss):
        return {"label": label, "configs": {"train": {"learning_rate": lr}}, "tune_loss": loss}

    records = [
        rec("t5", 1e-3, 2.0),
        rec("t5", 1e-3, 2.2),
        rec("t5", 3e-3, 2.05),
        rec("t5", 3e-3, 2.05),
        rec("rope", 1e-3, 1.9),
        rec("rope", 3e-3, 1.9),
        rec("rope", 1e-2, 2.5),
    ]
    chosen = grid.choose_lrs(records)
    assert chosen["t5"]["chosen"] == 3e-3 and chosen["t5"]["tune_loss"] == {
        "0.001": [2.0, 2.2],
        "0.003": [2.05, 2.05],
    }
    assert chosen["rope"]["chosen"] == 1e-3  # a tie goes to the smaller rate

"""recipes/: every Table 3 recipe parses into the real argument classes, the files equal the generator's output,
and the accelerate configs load with accelerate's own config class."""

import importlib.util
from pathlib import Path

import pytest
import torch

from ko_hf.finetune import FinetuneError, load_config_file, parse_config
from ko_hf.trainer import DEFAULT_COLL_COEF, DEFAULT_DISTANCE_SCALE, DEFAULT_PAIRING

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TABLE3 = sorted((RECIPES / "table3").glob("*/*.yaml"))
ACCELERATE = sorted((RECIPES / "accelerate").glob("*.yaml"))


def _generator():
    spec = importlib.util.spec_from_file_location("make_table3", RECIPES / "make_table3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(mapping):
    # The recipes ask for bf16 (they are GPU recipes); without a GPU, transformers refuses bf16 unless use_cpu.
    if not torch.cuda.is_available():
        mapping = {**mapping, "use_cpu": True}
    return parse_config(mapping)


def test_there_is_one_recipe_per_table3_cell():
    names = {(p.parent.name, p.stem) for p in TABLE3}
    assert names == {(model, f"{dataset}-{setting}")
                     for model in ("bert-base-cased", "bert-base-uncased", "distilbert-base-uncased")
                     for dataset in ("imdb", "snips") for setting in ("adamw", "soft", "hard")}


def test_committed_recipes_equal_the_generator_output():
    generated = _generator().render_recipes()
    committed = {str(p.relative_to(RECIPES)): p.read_text(encoding="utf-8") for p in TABLE3}
    stale = sorted(k for k in generated if committed.get(k) != generated[k])
    assert not stale, f"recipes out of date, run `python recipes/make_table3.py`: {stale}"
    assert set(committed) == set(generated)


@pytest.mark.parametrize("path", TABLE3, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses_into_the_real_arguments(path):
    mapping = load_config_file(path)
    options, args = _parse(mapping)
    model, cell = path.parent.name, path.stem
    dataset, setting = cell.split("-")
    assert options.model_name_or_path == model and options.dataset == dataset
    assert options.max_length == {"imdb": 256, "snips": 64}[dataset]
    assert args.num_train_epochs == 10  # the paper's only stated hyperparameter
    assert args.collision == {"adamw": "none", "soft": "soft", "hard": "hard"}[setting]
    assert args.coll_coef == DEFAULT_COLL_COEF[args.collision]  # the library defaults, written out
    assert args.collision_distance_scale == DEFAULT_DISTANCE_SCALE
    assert args.collision_pairing == DEFAULT_PAIRING
    assert ("collision_pairing" in mapping) == (setting == "hard")
    assert args.learning_rate == 2e-5 and args.per_device_train_batch_size == 32 and args.weight_decay == 0.01
    assert args.warmup_steps == 0.06 and args.bf16
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch" and args.load_best_model_at_end
    assert args.metric_for_best_model == "accuracy" and args.report_to == []
    assert "output_dir" not in mapping  # named after the model, data set and collision run (below)


@pytest.mark.parametrize("flags, folder", [
    ({}, "ko-output/bert-base-cased-snips-hard"),
    ({"model_name_or_path": "roberta-base"}, "ko-output/roberta-base-snips-hard"),
    ({"model_name_or_path": "roberta-base", "dataset": "imdb=/data/aclImdb", "collision": "soft"},
     "ko-output/roberta-base-imdb-soft"),
    ({"output_dir": "runs/mine"}, "runs/mine"),
])
def test_a_recipe_run_writes_where_its_model_and_data_say(flags, folder):
    from ko_hf_cli.main import build_config

    mapping = build_config(RECIPES / "table3" / "bert-base-cased" / "snips-hard.yaml", flags)
    assert mapping["output_dir"] == folder


def test_a_typo_in_a_recipe_fails(tmp_path):
    text = TABLE3[0].read_text(encoding="utf-8").replace("learning_rate:", "learning_rat:")
    typo = tmp_path / "typo.yaml"
    typo.write_text(text, encoding="utf-8")
    with pytest.raises(FinetuneError, match=r"learning_rat.*did you mean 'learning_rate'"):
        _parse(load_config_file(typo))


def test_a_bad_value_in_a_recipe_fails(tmp_path):
    text = TABLE3[0].read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("collision: none", "collision: sideways").replace("collision: soft", "collision: sideways")
                   .replace("collision: hard", "collision: sideways"), encoding="utf-8")
    with pytest.raises(ValueError, match="sideways"):
        _parse(load_config_file(bad))


def test_accelerate_configs_load_with_accelerate():
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    assert [p.name for p in ACCELERATE] == ["ddp.yaml", "multi_node.yaml", "single_gpu.yaml"]
    configs = {p.stem: ClusterConfig.from_yaml_file(str(p)) for p in ACCELERATE}
    assert configs["single_gpu"].distributed_type == DistributedType.NO and configs["single_gpu"].num_processes == 1
    assert configs["ddp"].distributed_type == DistributedType.MULTI_GPU and configs["ddp"].num_machines == 1
    multi = configs["multi_node"]
    assert multi.distributed_type == DistributedType.MULTI_GPU and multi.num_machines == 2
    assert multi.num_processes % multi.num_machines == 0 and multi.main_process_ip and multi.main_process_port
    # no ZeRO/FSDP: they shard the head's gradient, which collisions need whole (KOTrainer refuses them)
    assert all(c.mixed_precision == "bf16" and not c.deepspeed_config and not c.fsdp_config for c in configs.values())


def test_accelerate_rejects_a_typo_in_its_config(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    typo = tmp_path / "typo.yaml"
    typo.write_text(ACCELERATE[0].read_text().replace("num_processes:", "num_procesess:"))
    with pytest.raises(ValueError, match="num_procesess"):
        ClusterConfig.from_yaml_file(str(typo))


def test_readme_recipe_line_says_what_a_cpu_needs():
    readme = (RECIPES.parent / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if "--config recipes/table3/" in line and "ko-finetune" in line]
    assert lines and all("--no-bf16" in line for line in lines)
    mapping = load_config_file(TABLE3[0])
    if not torch.accelerator.is_available():  # as written, a CPU machine stops with what to add
        with pytest.raises(FinetuneError, match=r"--no-bf16"):
            parse_config(mapping)
    assert parse_config({**mapping, "bf16": False})[1].bf16 is False  # with the flag the README names, it runs

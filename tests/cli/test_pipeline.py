import json

import pytest
import yaml

from moss_components.cli.pipeline import (
    PRESETS,
    STAGES,
    STEPS_PER_MINUTE,
    TRAINING_STAGES,
    Pipeline,
    _merge,
    parse_override,
    pipeline,
)
from moss_components.evaluation.run_layout import RunLayout


def test_merge_is_deep_and_leaves_the_base_alone():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    out = _merge(base, {"a": {"c": [2]}, "e": 3})
    assert out == {"a": {"b": 1, "c": [2]}, "d": 2, "e": 3} and base["a"]["c"] == [1]


@pytest.mark.parametrize("stage", TRAINING_STAGES)
def test_stage_configs_write_into_the_run_and_chain_the_stages(tmp_path, stage):
    run = Pipeline(RunLayout(tmp_path), PRESETS["tiny"])
    config = yaml.safe_load(run.stage_config(stage).read_text())
    dump = json.dumps(config)
    assert "runs/" not in dump, "a path of the config's own default run leaked into the pipeline's run"
    assert config["trainer"]["default_root_dir"] == str(tmp_path / stage)
    budget = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("CPUTimeBudget")]
    assert budget[0]["init_args"]["minutes"] == PRESETS["tiny"].minutes[stage]
    # the learning-rate schedule ends inside the budget, at the steps measured to fit it
    expected = 0.9 * STEPS_PER_MINUTE[stage] * PRESETS["tiny"].minutes[stage]
    assert config["trainer"]["max_steps"] == int(expected) > 0
    init = config["model"]["init_args"]
    previous = {"pt2": "pt1", "sft": "pt2"}.get(stage)
    if previous:
        assert init["init_from"] == str(tmp_path / previous / "export")
    if stage in ("pt1", "pt2", "sft"):
        assert init["trunk"]["init_args"]["path"] == str(tmp_path / "text_llm" / "export")
    if stage in ("text_llm", "pt1", "pt2", "sft"):
        assert config["data"]["init_args"]["seed"] == config["seed_everything"] == 0


def test_a_variant_that_retrains_a_stage_does_not_adopt_what_reads_it(tmp_path):
    base = RunLayout(tmp_path / "base")
    for stage in STAGES:
        base.stage_dir(stage).mkdir(parents=True)
        base.record(stage).parent.mkdir(parents=True, exist_ok=True)
        base.record(stage).write_text(json.dumps({"stage": stage, "wall_seconds": 1.0}))
    run = Pipeline(RunLayout(tmp_path / "variant"), PRESETS["tiny"])
    adopted = run.adopt(base, tuple(s for s in STAGES if s != "pt1"))
    assert adopted == ["corpus", "tokenizer", "speech_ids", "decoder", "codec_eval", "judge", "text_llm"]
    assert (tmp_path / "variant" / "text_llm").is_symlink() and not (tmp_path / "variant" / "pt2").exists()


def test_overrides_parse_as_yaml_and_steps_replace_the_time_budget(tmp_path):
    assert parse_override("pt2:model.init_args.freezing={class_path: a.B}") == (
        "pt2",
        {"model": {"init_args": {"freezing": {"class_path": "a.B"}}}},
    )
    with pytest.raises(ValueError, match="'pt9:x=1' is not STAGE:dotted.key=value"):
        parse_override("pt9:x=1")
    run = Pipeline(RunLayout(tmp_path), PRESETS["tiny"], overrides=dict([parse_override("pt2:trainer.max_steps=7")]))
    trainer = yaml.safe_load(run.stage_config("pt2").read_text())["trainer"]
    assert trainer["max_steps"] == 7
    assert not [c for c in trainer.get("callbacks") or [] if c["class_path"].endswith("CPUTimeBudget")]


def test_unknown_preset_and_stage_are_named():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        pipeline(preset="huge")
    with pytest.raises(ValueError, match="unknown stages \\['pt3'\\]"):
        pipeline(stages=["pt3"])


def test_smoke_pipeline_runs_every_stage_and_resumes(tmp_path):
    """The main job's wiring, end to end on the 12-fact corpus, a few steps per stage (no quality claimed)."""
    out = tmp_path / "run"
    pipeline(preset="smoke", out=str(out))
    layout = RunLayout(out)
    assert all(layout.record(stage).is_file() for stage in STAGES)
    report = json.loads((out / "report.json").read_text())
    for key in ("s2s_text_free_accuracy", "s2s_text_guided_accuracy", "s2t_accuracy", "t2t_accuracy",
                "unseen_voice_s2s_accuracy", "heldout_fact_s2s_accuracy", "text_ppl_base", "text_ppl_after_pt1",
                "text_ppl_after_sft", "codec_resynth_cer", "judge_cer_assistant_voice",
                "s2s_reference_ids_accuracy", "s2s_text_free_accuracy_open", "s2s_reference_ids_accuracy_open",
                "judge_reference_audio_accuracy", "judge_reference_audio_accuracy_open"):  # fmt: skip
        assert key in report, key
    assert report["text_path_unchanged"] is True
    assert 0 <= report["s2s_reference_ids_accuracy"] <= 1 and report["s2s_reference_ids_n"] > 0
    assert report["text_ppl_after_pt1"] == report["text_ppl_base"]
    assert set(report["wall_seconds"]) == {*STAGES, "total"} - {"evaluate"}
    assert (out / "report.md").is_file() and (out / "plots" / "loss_curves.png").is_file()
    assert (out / "examples" / "0_answer.wav").is_file()
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    for figure in ("s2t_accuracy", "t2t_accuracy", "s2s_text_free_accuracy"):  # each accuracy is the mean of lines
        lines = [a for a in answers if a["figure"] == figure]
        assert len(lines) == report[f"{figure}_n"] and lines[0]["expected"]
        assert report[figure] == pytest.approx(sum(a["correct"] for a in lines) / len(lines))
    unseen = [a["correct"] for a in answers if a["figure"] == "s2t_accuracy" and a["unseen_voice"]]
    assert report["unseen_voice_s2t_accuracy_n"] == len(unseen)
    assert report["unseen_voice_s2t_accuracy"] == (pytest.approx(sum(unseen) / len(unseen)) if unseen else None)
    spoken = [a for a in answers if a["figure"] == "s2s_text_free_accuracy"]  # closed-set judge, and open beside
    assert report["s2s_text_free_accuracy_open"] == pytest.approx(sum(a["correct_open"] for a in spoken) / len(spoken))

    before = {s: layout.record(s).read_text() for s in STAGES}
    pipeline(preset="smoke", out=str(out))  # a rerun skips every finished stage
    assert {s: layout.record(s).read_text() for s in STAGES} == before

    # an ablation variant: everything but SFT linked from the run, SFT retrained with a changed config
    variant = tmp_path / "variant"
    pipeline(preset="smoke", out=str(variant), base=str(out), stages=["sft", "evaluate"],
             overrides=["sft:trainer.max_steps=1"])  # fmt: skip
    assert (variant / "pt2").is_symlink() and not (variant / "sft").is_symlink()
    assert yaml.safe_load((variant / "sft" / "config.yaml").read_text())["trainer"]["max_steps"] == 1
    assert json.loads((variant / "report.json").read_text())["text_path_unchanged"] is True
    with pytest.raises(FileNotFoundError, match="has not finished stage 'corpus'"):
        pipeline(preset="smoke", out=str(tmp_path / "v2"), base=str(tmp_path / "nothing"), stages=["sft"])


@pytest.mark.parametrize("corpus_preset, expected", [("small", "small"), ("micro", "tiny"), (None, "tiny")])
def test_evaluate_writes_a_report_under_the_run_own_preset(tmp_path, corpus_preset, expected):
    from moss_components.cli.evaluate import _run_preset

    layout = RunLayout(tmp_path)
    if corpus_preset:
        layout.corpus.mkdir(parents=True)
        (layout.corpus / "corpus.json").write_text(json.dumps({"preset": corpus_preset}))
    assert _run_preset(layout) == expected

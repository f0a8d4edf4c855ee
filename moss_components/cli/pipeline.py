"""``moss-speech pipeline``: the whole embedded default, end to end, resumable.

synth-data -> speech tokenizer -> speech-id cache -> decoder + vocoder -> codec evaluation -> ASR judge -> text LLM
-> PT-1 (frozen LLM) -> PT-2 (unfrozen, text replay) -> SFT -> evaluation and report.

Each training stage is a LightningCLI ``fit`` of a config under ``configs/`` with the run's paths and time budget
merged in; the merged config is kept in the stage's folder, so any stage can be rerun by hand with
``moss-speech fit -c RUN/<stage>/config.yaml``. A finished stage leaves ``RUN/stages/<stage>.json`` and is skipped
when the pipeline is run again.

Ablations reuse a finished run::

    moss-speech pipeline --out runs/nf --base runs/demo --stages '[pt2, sft, evaluate]' \
        --overrides '["pt2:model.init_args.freezing={class_path: moss_components.freezing.NoFreeze}"]'

links every other stage's outputs from ``runs/demo`` and retrains only PT-2 and SFT with the changed part.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from moss_components.evaluation.run_layout import RunLayout

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


TRAINING_STAGES = ("tokenizer", "decoder", "judge", "text_llm", "pt1", "pt2", "sft")


@dataclass(frozen=True)
class PipelinePreset:
    """Sizes and budgets of a pipeline run.

    Args:
        corpus: the ``synth-data`` preset.
        configs: the config preset of each training stage (``configs/<stage>/<name>.yaml``).
        minutes: per training stage, the budget in CPU minutes on 2 cores (the stage stops early when it is spent).
        max_steps: per training stage, the optimizer steps overriding the config's; the learning-rate schedule
            spans them, so set them to about what ``minutes`` allows.
        validate: run the stages' validation loops (off for smoke runs).
        eval_items: questions per figure of the report (None: the whole test split).
        codec_items: read-speech test utterances for the codec figures.
        max_new_tokens: the longest answer evaluation generates.
    """

    corpus: str
    configs: str
    minutes: dict[str, float] = field(default_factory=dict)
    max_steps: dict[str, int] = field(default_factory=dict)
    validate: bool = True
    eval_items: int | None = 200
    codec_items: int = 64
    max_new_tokens: int = 120


# Optimizer steps per CPU-minute of each stage's tiny config on 2 cores (tokenizer and judge: ``make demo``,
# runs/demo4; the decoder: runs/dec-bf16; text LLM and PT-2 under bf16-mixed: runs/bf16lm; PT-1 with rows of 192
# and SFT with rows of 256 and tag prompts: runs/lmfast). Every schedule is a warm-up then a cosine decay over
# ``max_steps``: the presets size ``max_steps`` to their budgets (90% of the measured rate). On a slower machine the
# budget runs out first, part-way through the decay; ``CPUTimeBudget(anneal=True)`` would end each decay with the
# budget instead, but over one demo's codec the LM stages did worse with it (README).
STEPS_PER_MINUTE = {"tokenizer": 424, "decoder": 209, "judge": 248, "text_llm": 184, "pt1": 191, "pt2": 448,
                    "sft": 212}  # fmt: skip


def _budgeted(corpus: str, minutes: dict[str, float], **kwargs) -> PipelinePreset:
    """A preset of the tiny configs with these CPU-minute budgets and ``max_steps`` sized to them."""
    steps = {stage: int(0.9 * STEPS_PER_MINUTE[stage] * m) for stage, m in minutes.items()}
    return PipelinePreset(corpus=corpus, configs="tiny", minutes=minutes, max_steps=steps, **kwargs)


PRESETS = {
    "tiny": _budgeted(
        "tiny",
        {"tokenizer": 3.5, "decoder": 3.5, "judge": 2.0, "text_llm": 3.0, "pt1": 2.0, "pt2": 3.0, "sft": 4.0},
        eval_items=150,
    ),
    # ~1.5 hours on 2 quiet cores: 75 CPU-minutes of training, the rest synthesis, encoding and a full evaluation
    "small": _budgeted(
        "small",
        {"tokenizer": 12, "decoder": 8, "judge": 5, "text_llm": 8, "pt1": 10, "pt2": 12, "sft": 20},
        eval_items=None,
    ),
    # every stage for a few steps on the 12-fact corpus: checks the wiring, not the quality (tests, tutorials)
    "smoke": PipelinePreset(
        corpus="micro",
        configs="tiny",
        max_steps=dict.fromkeys(TRAINING_STAGES, 2),
        validate=False,
        eval_items=2,
        codec_items=2,
        max_new_tokens=8,
    ),
}

STAGES = ("corpus", "tokenizer", "speech_ids", "decoder", "codec_eval", "judge", "text_llm", "pt1", "pt2", "sft",
          "evaluate")  # fmt: skip
# what each stage reads: a stage adopted from a base run must not depend on one that this run retrains
STAGE_INPUTS = {"corpus": (), "tokenizer": ("corpus",), "speech_ids": ("corpus", "tokenizer"),
                "decoder": ("corpus", "tokenizer"), "codec_eval": ("corpus", "tokenizer", "decoder"),
                "judge": ("corpus",), "text_llm": ("corpus",), "pt1": ("text_llm", "speech_ids"), "pt2": ("pt1",),
                "sft": ("pt2",), "evaluate": ("codec_eval", "judge", "sft")}  # fmt: skip
CONFIG_DIR = {"tokenizer": "tokenizer", "decoder": "decoder", "judge": "asr", "text_llm": "text", "pt1": "pt1",
              "pt2": "pt2", "sft": "sft"}  # fmt: skip


def _merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base`` (dicts merge, everything else is replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> tuple[str, dict]:
    """``"pt2:model.init_args.lr=0.001"`` -> ``("pt2", {"model": {"init_args": {"lr": 0.001}}})``.

    The value is read as YAML, so ``{class_path: ..., init_args: {...}}`` swaps a whole component.
    """
    stage, sep, rest = text.partition(":")
    key, eq, value = rest.partition("=")
    if not sep or not eq or not key or stage not in TRAINING_STAGES:
        raise ValueError(f"override {text!r} is not STAGE:dotted.key=value with STAGE one of {TRAINING_STAGES}")
    tree: object = yaml.safe_load(value)
    for part in reversed(key.split(".")):
        tree = {part: tree}
    return stage, tree


class Pipeline:
    """One run of the pipeline in ``layout.root``; see the module docstring.

    Args:
        layout: the run directory.
        preset: sizes and budgets.
        seed: seed of the corpus and of every stage.
        overrides: per training stage, a config tree merged over the stage's config (after the run's paths). A
            stage whose override sets ``trainer.max_steps`` trains for exactly that many steps, without the
            preset's time budget, so that ablation variants get the same number of steps.
    """

    def __init__(
        self, layout: RunLayout, preset: PipelinePreset, seed: int = 0, overrides: dict[str, dict] | None = None
    ) -> None:
        self.layout, self.preset, self.seed = layout, preset, seed
        self.overrides = overrides or {}

    def adopt(self, base: RunLayout, stages: tuple[str, ...]) -> list[str]:
        """Link the outputs of ``stages`` finished in ``base`` into this run and mark them done here.

        Returns the stages adopted. A stage unfinished in ``base`` is an error, named with its folder. A stage that
        reads one this run retrains is left out (its base outputs would be stale) and named on stdout; so is
        ``evaluate``: the report belongs to the run that made it.
        """
        retrained = set(STAGES) - set(stages)
        stale = [s for s in stages if s != "evaluate" and self._upstream(s) & retrained]
        if stale:
            print(f"not linked from {base.root}: {stale}, which read stages this run retrains")
        stages = tuple(s for s in stages if s not in stale)
        adopted = []
        for stage in stages:
            if self.done(stage) or stage == "evaluate":
                continue
            if not base.record(stage).is_file():
                raise FileNotFoundError(f"base run {base.root} has not finished stage {stage!r} ({base.record(stage)})")
            link = self.layout.stage_dir(stage)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(base.stage_dir(stage).resolve(), target_is_directory=True)
            self.layout.record(stage).parent.mkdir(parents=True, exist_ok=True)
            self.layout.record(stage).write_text(base.record(stage).read_text())
            adopted.append(stage)
        return adopted

    @staticmethod
    def _upstream(stage: str) -> set[str]:
        """Every stage ``stage`` reads, directly or through others."""
        out: set[str] = set()
        todo = list(STAGE_INPUTS[stage])
        while todo:
            s = todo.pop()
            if s not in out:
                out.add(s)
                todo.extend(STAGE_INPUTS[s])
        return out

    # ------------------------------------------------------------------ bookkeeping

    def done(self, stage: str) -> bool:
        return self.layout.record(stage).is_file()

    def _mark_done(self, stage: str, seconds: float, extra: dict | None = None) -> None:
        path = self.layout.record(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stage": stage, "wall_seconds": round(seconds, 1), **(extra or {})}, indent=2))
        tmp.replace(path)

    def wall_seconds(self) -> dict[str, float]:
        out = {}
        for stage in STAGES:
            if self.done(stage):
                out[stage] = json.loads(self.layout.record(stage).read_text())["wall_seconds"]
        return out

    # ------------------------------------------------------------------ training stages

    def stage_config(self, stage: str) -> Path:
        """Merge the stage's config with this run's paths and budget; write it to ``RUN/<stage>/config.yaml``."""
        base_path = CONFIGS / CONFIG_DIR[stage] / f"{self.preset.configs}.yaml"
        if not base_path.is_file():
            raise FileNotFoundError(f"no config {base_path} for stage {stage!r} (preset {self.preset.configs!r})")
        config = _merge(yaml.safe_load(base_path.read_text()), self._overrides(stage))
        config = _merge(config, self.overrides.get(stage, {}))
        trainer = config.setdefault("trainer", {})
        stage_dir = self.layout.stage_dir(stage)
        trainer["default_root_dir"] = str(stage_dir)
        trainer["enable_progress_bar"] = False  # the pipeline's own bar shows progress; each stage logs to CSV
        trainer["enable_model_summary"] = False
        trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                             "init_args": {"save_dir": str(stage_dir), "name": "logs"}}  # fmt: skip
        # An override's max_steps is the budget (ablations get equal steps); otherwise the preset's steps and minutes.
        callbacks = [c for c in trainer.get("callbacks") or [] if not c["class_path"].endswith("CPUTimeBudget")]
        if "max_steps" not in self.overrides.get(stage, {}).get("trainer", {}):
            if stage in self.preset.max_steps:
                trainer["max_steps"] = self.preset.max_steps[stage]
            minutes = self.preset.minutes.get(stage)
            if minutes is not None:
                callbacks.append({"class_path": "lightning_modules.callbacks.CPUTimeBudget",
                                  "init_args": {"minutes": minutes, "threads": 2}})  # fmt: skip
        trainer["callbacks"] = callbacks
        if not self.preset.validate:
            trainer["limit_val_batches"] = 0
            trainer["log_every_n_steps"] = 1
        config["seed_everything"] = self.seed
        stage_dir.mkdir(parents=True, exist_ok=True)
        path = stage_dir / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _overrides(self, stage: str) -> dict:
        lay = self.layout
        corpus = {"data": {"init_args": {"manifest_dir": str(lay.corpus)}}}
        lm_data = {"data": {"init_args": {"corpus_dir": str(lay.corpus), "speech_cache_dir": str(lay.speech_ids),
                                          "seed": self.seed}}}  # fmt: skip
        if stage == "tokenizer":
            return _merge(corpus, {"model": {"init_args": {"export_dir": str(lay.export("tokenizer"))}}})
        if stage == "decoder":
            paths = {"tokenizer_path": str(lay.export("tokenizer")), "decoder_export_dir": str(lay.decoder),
                     "vocoder_export_dir": str(lay.vocoder)}  # fmt: skip
            return _merge(corpus, {"model": {"init_args": paths}})
        if stage == "judge":
            return _merge(corpus, {"model": {"init_args": {"export_dir": str(lay.export("judge"))}}})
        if stage == "text_llm":
            return _merge(lm_data, {"model": {"init_args": {"export_dir": str(lay.text_llm)}}})
        trunk = {"class_path": "moss_components.trunks.PretrainedTrunk", "init_args": {"path": str(lay.text_llm)}}
        previous = {"pt1": None, "pt2": "pt1", "sft": "pt2"}[stage]
        init = {"trunk": trunk, "export_dir": str(lay.export(stage))}
        if previous:
            init["init_from"] = str(lay.export(previous))
        else:  # PT-1 starts the speech embeddings from the tokenizer's reading of them
            init["speech_embedding_init"] = {"class_path": "moss_components.model.CTCAlignedInit",
                                             "init_args": {"tokenizer": str(lay.export("tokenizer")),
                                                           "speech_cache_dir": str(lay.speech_ids)}}  # fmt: skip
        return _merge(
            lm_data, {"model": {"init_args": init}, "data": {"init_args": {"text_tokenizer": str(lay.text_llm)}}}
        )

    def fit(self, stage: str) -> None:
        from moss_components.cli.lightning_cli import run_lightning_cli

        run_lightning_cli(["fit", "-c", str(self.stage_config(stage))])

    # ------------------------------------------------------------------ the other stages

    def corpus(self) -> dict:
        from moss_components.data.synth_corpus import build_corpus

        return build_corpus(self.layout.corpus, preset=self.preset.corpus, seed=self.seed, progress=False)["counts"]

    def speech_ids(self) -> None:
        from moss_components.cli.tokenize import tokenize

        tokenize(str(self.layout.export("tokenizer")), str(self.layout.corpus), str(self.layout.speech_ids),
                 progress=False)  # fmt: skip

    def codec_eval(self) -> dict:
        from moss_components.cli.evaluate_codec import evaluate_codec

        lay = self.layout
        return evaluate_codec(tokenizer=str(lay.export("tokenizer")), decoder=str(lay.decoder),
                              vocoder=str(lay.vocoder), manifest=str(lay.corpus / "read" / "test.jsonl"),
                              out=str(lay.stage_dir("codec_eval")), max_utterances=self.preset.codec_items)  # fmt: skip

    def evaluate(self) -> dict:
        from moss_components.cli.report import write_report

        return write_report(
            self.layout,
            self.wall_seconds(),
            self.preset.corpus,
            max_items=self.preset.eval_items,
            max_new_tokens=self.preset.max_new_tokens,
        )

    # ------------------------------------------------------------------ driver

    def run(self, stages: tuple[str, ...] = STAGES, progress: bool = True) -> None:
        from tqdm import tqdm

        todo = [s for s in stages if not self.done(s)]
        bar = tqdm(total=len(stages), initial=len(stages) - len(todo), desc="pipeline", unit="stage",
                   disable=not progress)  # fmt: skip
        for stage in todo:
            bar.set_postfix_str(stage)
            t0 = time.time()
            extra = self.fit(stage) if stage in TRAINING_STAGES else getattr(self, stage)()
            self._mark_done(stage, time.time() - t0, {"result": extra} if isinstance(extra, dict) else None)
            bar.update(1)
        bar.close()


def pipeline(
    preset: str = "tiny",
    out: str = "runs/demo",
    seed: int = 0,
    stages: list[str] | None = None,
    base: str | None = None,
    overrides: list[str] | None = None,
) -> None:
    """Run the embedded default end to end: corpus, codec, text LLM, PT-1, PT-2, SFT, evaluation.

    Resumable: a rerun skips the stages already finished (delete ``OUT/stages/<stage>.json`` to redo one).

    Args:
        preset: ``tiny`` (about 22 minutes on 2 CPU cores), ``small`` (about 1.5 hours) or ``smoke`` (every stage
            for a few steps on a 12-fact corpus: a wiring check in about a minute, no quality).
        out: the run directory.
        seed: seed of the corpus and of every stage.
        stages: run only these stages (default: all, in order).
        base: a finished run whose other stages (those not in ``stages``) are linked into OUT instead of rerun.
        overrides: ``STAGE:dotted.key=yaml_value`` changes to a training stage's config, e.g.
            ``pt2:trainer.max_steps=200`` or ``sft:model.init_args.router={class_path: ...}``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    unknown = set(stages or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; expected some of {STAGES}")
    if base and not stages:
        raise ValueError("base needs stages: the stages to rerun (every other stage is linked from the base run)")
    tree: dict[str, dict] = {}
    for text in overrides or ():
        stage, change = parse_override(text)
        tree[stage] = _merge(tree.get(stage, {}), change)
    run = Pipeline(RunLayout(out), PRESETS[preset], seed, tree)
    if base:
        run.adopt(RunLayout(base), tuple(s for s in STAGES if s not in stages))
    run.run(tuple(s for s in STAGES if not stages or s in stages))
    report = RunLayout(out).root / "report.md"
    if report.is_file():
        print(report.read_text())

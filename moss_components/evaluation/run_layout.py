"""Where each stage of a pipeline run keeps its outputs, so ``pipeline``, ``evaluate`` and ``chat`` agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    """The folders of one run directory ``root``.

    ``corpus/`` the built-in corpus; ``tokenizer/export`` the speech tokenizer; ``speech_ids/`` its cache of the
    corpus; ``decoder/decoder`` and ``decoder/vocoder``; ``judge/export`` the ASR judge; ``text_llm/export`` the text
    LLM (a Hugging Face directory); ``pt1|pt2|sft/export`` the speech LM after each stage (MOSS-Speech layout);
    ``stages/<name>.json`` a finished stage's record; ``report.json``, ``report.md``, ``plots/``, ``examples/``.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def export(self, stage: str) -> Path:
        return self.root / stage / "export"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def speech_ids(self) -> Path:
        return self.root / "speech_ids"

    @property
    def decoder(self) -> Path:
        return self.root / "decoder" / "decoder"

    @property
    def vocoder(self) -> Path:
        return self.root / "decoder" / "vocoder"

    @property
    def text_llm(self) -> Path:
        return self.export("text_llm")

    @property
    def speech_lm(self) -> Path:
        """The final speech LM: the latest of SFT, PT-2, PT-1 that exists."""
        for stage in ("sft", "pt2", "pt1"):
            if (self.export(stage) / "config.json").is_file():
                return self.export(stage)
        raise FileNotFoundError(f"{self.root} has no trained speech LM (looked for sft/, pt2/, pt1/ exports)")

    def record(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def examples(self) -> Path:
        return self.root / "examples"

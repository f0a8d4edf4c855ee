"""Entry point of ``moss-speech``.

``fit | validate | test | predict`` go to LightningCLI. Every other subcommand is a plain function run through
jsonargparse, imported only when called so that ``moss-speech --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

LIGHTNING_SUBCOMMANDS = {
    "fit": "Train a stage from a YAML config (LightningCLI).",
    "validate": "Validate a stage (LightningCLI).",
    "test": "Test a stage (LightningCLI).",
    "predict": "Predict with a stage (LightningCLI).",
}

# name -> ("module:function", one-line help[, "positional"]). A function is run with jsonargparse.CLI, its required
# arguments as --flags unless "positional" is given; a dict of such entries is a group of sub-subcommands
# (``moss-speech bench attention``).
SUBCOMMANDS: dict[str, tuple | dict[str, tuple]] = {
    "synth-data": (
        "moss_components.cli.synth_data:synth_data",
        "Synthesize the built-in spoken corpus with eSpeak NG.",
    ),
    "data": {
        "import": ("moss_components.cli.data:import_corpus", "Convert a LibriSpeech tree or a wav+txt folder."),
        "check": ("moss_components.cli.data:check", "Validate a manifest; exit non-zero on errors.", "positional"),
    },
    "tokenize": ("moss_components.cli.tokenize:tokenize", "Encode a manifest to cached speech ids."),
    "pipeline": ("moss_components.cli.pipeline:pipeline", "Run the whole recipe end to end (the main job)."),
    "chat": ("moss_components.cli.chat:chat", "Answer a spoken question (WAV in, WAV out)."),
    "evaluate": ("moss_components.cli.evaluate:evaluate", "Recompute a run's report figures."),
    "evaluate-codec": (
        "moss_components.cli.evaluate_codec:evaluate_codec",
        "Measure tokenizer/decoder/vocoder quality.",
    ),
    "bench": {
        "split-overhead": ("moss_components.cli.bench_split_overhead:bench_split_overhead", "Split model vs plain LM."),
        "data": ("moss_components.cli.bench_data:bench_data", "Synthesis and data-loader throughput."),
        "batching": ("moss_components.cli.bench_batching:bench_batching", "Tokenizer steps: random vs bucketed."),
        "attention": ("moss_components.cli.bench_attention:bench_attention", "Triton attention vs SDPA."),
        "attention-tune": ("moss_components.cli.tune_attention:tune_attention", "Attention launch-settings search."),
        "loss": ("moss_components.cli.bench_loss:bench_loss", "Fused linear cross-entropy vs naive."),
        "generate": ("moss_components.cli.bench_generate:bench_generate", "Cached speech generation vs HF generate."),
    },
}


def _usage(table: dict, prog: str) -> str:
    lines = [f"usage: {prog} <subcommand> [options]", "", "subcommands:"]
    if prog == "moss-speech":
        lines += [f"  {name:<16} {desc}" for name, desc in LIGHTNING_SUBCOMMANDS.items()]
    for name, entry in table.items():
        if isinstance(entry, dict):
            lines.append(f"  {name:<16} " + " | ".join(entry))
        else:
            lines.append(f"  {name:<16} {entry[1]}")
    lines += ["", f"Run '{prog} <subcommand> --help' for its options."]
    return "\n".join(lines)


def _load(target: str):
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise SystemExit(f"moss-speech: '{module_name}' is not part of this installation") from err
        raise
    return getattr(module, func_name)


def _dispatch(table: dict, argv: list[str], prog: str) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(table, prog))
        return
    name, rest = argv[0], argv[1:]
    if name not in table:
        known = ", ".join(list(LIGHTNING_SUBCOMMANDS if prog == "moss-speech" else []) + list(table))
        raise SystemExit(f"{prog}: unknown subcommand '{name}'; expected one of: {known}")
    entry = table[name]
    if isinstance(entry, dict):
        _dispatch(entry, rest, f"{prog} {name}")
        return
    from jsonargparse import CLI

    CLI(_load(entry[0]), args=rest, prog=f"{prog} {name}", as_positional=entry[2:] == ("positional",))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in LIGHTNING_SUBCOMMANDS:
        from moss_components.cli.lightning_cli import run_lightning_cli

        # None: LightningCLI reads sys.argv itself (it warns when given both)
        run_lightning_cli(None if argv is None else args)
        return
    _dispatch(SUBCOMMANDS, args, "moss-speech")


if __name__ == "__main__":
    main()

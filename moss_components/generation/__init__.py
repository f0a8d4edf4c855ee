"""Generation: MOSS-Speech's modality state machine, sampling, KV-cached batched decoding, speech streaming."""

from moss_components.generation.generate import (
    GenerationResult,
    GenerationStep,
    add_start_of_speech,
    generate,
    generate_steps,
    stream_speech,
)
from moss_components.generation.sampling import SamplingConfig, apply_repetition_penalty, process_logits, sample_next

__all__ = [
    "GenerationResult",
    "GenerationStep",
    "SamplingConfig",
    "add_start_of_speech",
    "apply_repetition_penalty",
    "generate",
    "generate_steps",
    "process_logits",
    "sample_next",
    "stream_speech",
]

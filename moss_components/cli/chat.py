"""``moss-speech chat``: answer a spoken question (WAV in) with a spoken answer (WAV out), from a pipeline run."""

from __future__ import annotations

import math

from moss_components.chat import (
    CHAT_MODES,
    AudioFileError,
    ChatAnswer,
    SpokenChat,
    StreamingWavWriter,
    read_question_audio,
)
from moss_components.generation import SamplingConfig

__all__ = ["chat", "format_answer"]


def format_answer(answer: ChatAnswer, output: str, streamed: bool) -> str:
    """The lines ``chat`` prints: the transcript (saying whose it is) and the timings."""
    t = answer.timings
    source, said = answer.shown_transcript
    lines = [f"{source}: {said!r}" if said is not None else f"{source}: (none: the run has no ASR judge)"]
    if answer.mode == "text-guided" and answer.transcript is not None:
        lines.append(f"ASR judge's transcript of the spoken answer: {answer.transcript!r}")
    if answer.audio.numel() == 0:
        lines.append(f"the model gave no spoken answer (stopped on {answer.stopped}); {output} holds 0 samples")
    rtf = t.real_time_factor
    lines += [
        f"answer: {t.audio_seconds:.2f} s of audio at {answer.sample_rate} Hz, {len(answer.speech_ids)} speech ids, "
        f"{t.new_tokens} LM steps (stopped on {answer.stopped}) -> {output}",
        f"time to first audio chunk: {t.first_audio_seconds:.3f} s" + ("" if streamed else " (one-shot: whole answer)"),
        f"total time: {t.total_seconds:.3f} s (encode {t.encode_seconds:.3f}, generate {t.generation_seconds:.3f}, "
        f"decode+vocode {t.synthesis_seconds:.3f}; ASR judge {t.transcribe_seconds:.3f} s not counted)",
        "real-time factor: " + (f"{rtf:.3f}" if math.isfinite(rtf) else "n/a (no audio)") + " (total time / audio)",
    ]
    return "\n".join(lines)


def chat(
    run: str,
    input: str,
    output: str,
    mode: str = "text-free",
    stream: bool = False,
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int = 20,
    repetition_penalty: float = 1.1,
    greedy: bool = False,
    seed: int | None = 0,
    max_new_tokens: int = 500,
    decoder_seed: int = 0,
    device: str = "cpu",
) -> ChatAnswer:
    """Answer the spoken question in ``input`` and write the spoken answer to ``output`` (16-bit mono WAV).

    Prints the answer's transcript (the model's own text in text-guided mode, the ASR judge's transcript of the
    spoken answer otherwise) and the timings: time to the first audio chunk, total time, real-time factor.

    Args:
        run: a pipeline run directory (``moss-speech pipeline --out RUN``).
        input: the question, any rate and channel layout libsndfile reads (resampled and downmixed, with a warning).
        output: where the answer WAV goes.
        mode: ``text-free`` (speak straight away) or ``text-guided`` (write the answer, then speak it).
        stream: write audio chunk by chunk while speech ids are generated (chunked decoder with look-ahead).
        temperature, top_p, top_k, repetition_penalty: sampling (MOSS-Speech's defaults).
        greedy: argmax decoding instead of sampling.
        seed: sampling seed (None: not seeded).
        max_new_tokens: LM steps at most.
        decoder_seed: seed of the decoder's noise.
        device: cpu | cuda | auto.
    """
    import torch

    if mode not in CHAT_MODES:
        raise SystemExit(f"moss-speech chat: --mode {mode!r} is not one of {sorted(CHAT_MODES)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    sampling = SamplingConfig(
        temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
        max_new_tokens=max_new_tokens, greedy=greedy, seed=seed,
    )  # fmt: skip
    try:
        bot = SpokenChat.from_run(run, device=device, decoder_seed=decoder_seed)
    except FileNotFoundError as err:
        raise SystemExit(f"moss-speech chat: {err}") from err
    rate = bot.speech_tokenizer.sample_rate
    try:
        wav = read_question_audio(input, rate, min_samples=bot.speech_tokenizer.samples_per_frame)
    except AudioFileError as err:
        raise SystemExit(f"moss-speech chat: {err}") from err

    with StreamingWavWriter(output, bot.sample_rate) as writer:

        def on_chunk(chunk) -> None:
            if stream and writer.samples == 0:
                print(f"first audio chunk after {chunk.seconds:.3f} s -> {output}", flush=True)
            writer.write(chunk.audio)

        answer = bot.answer(wav, rate, mode=mode, stream=stream, sampling=sampling, on_chunk=on_chunk)
    print(format_answer(answer, output, stream))
    return answer

"""``SpokenChat``: a spoken question in, a spoken answer out, from the parts of a pipeline run.

```
question wav ─► speech tokenizer ─► ids ─► SFT prompt (s2s: text-free | s2s_guided: text first) ─► speech LM
   ─► speech ids as generated ─► decoder + vocoder (one shot, or chunk by chunk with look-ahead) ─► answer wav
                                                            └─► ASR judge ─► transcript
```
Generation stops when the answer's speech segment closes (end-of-speech), at a text EOS, or after
``max_new_tokens``. Streaming yields audio as soon as the chunked decoder and the vocoder have final samples; the
streamed waveform equals the one-shot one up to float rounding (same ids, same decoder noise seed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from moss_components.asr import CTCRecognizer
from moss_components.audio import to_mono_float32
from moss_components.chat.speech_stream import SpeechStream
from moss_components.data.sft import build_sft_prompt
from moss_components.decoders import SpeechDecoder
from moss_components.evaluation.speech_output import SpeechOutput
from moss_components.generation import SamplingConfig, generate_steps
from moss_components.model import LayerSplitSpeechLM
from moss_components.tokenizers.base import SpeechTokenizer
from moss_components.vocoders import Vocoder

__all__ = ["CHAT_MODES", "AudioChunk", "ChatAnswer", "ChatTimings", "SpokenChat"]

# chat mode -> SFT mode of the prompt (moss_components.data.sft)
CHAT_MODES = {"text-free": "s2s", "text-guided": "s2s_guided"}


@dataclass
class ChatTimings:
    """Where the time of one answer went, in seconds of wall time from the call (the judge is not counted).

    Attributes:
        encode_seconds: question audio -> speech ids.
        first_audio_seconds: from the call to the first audio chunk (one-shot: to the whole answer).
        total_seconds: from the call to the last audio sample.
        generation_seconds: speech-LM decoding steps.
        synthesis_seconds: decoder + vocoder.
        transcribe_seconds: the ASR judge (0 without one).
        audio_seconds: length of the answer audio.
        new_tokens: LM steps taken.
    """

    encode_seconds: float = 0.0
    first_audio_seconds: float | None = None
    total_seconds: float = 0.0
    generation_seconds: float = 0.0
    synthesis_seconds: float = 0.0
    transcribe_seconds: float = 0.0
    audio_seconds: float = 0.0
    new_tokens: int = 0

    @property
    def real_time_factor(self) -> float:
        """``total_seconds / audio_seconds`` (< 1: faster than real time); inf for an empty answer."""
        return self.total_seconds / self.audio_seconds if self.audio_seconds > 0 else float("inf")


@dataclass
class AudioChunk:
    """A piece of the answer: ``audio`` ``(T,)`` float32 at the vocoder's rate, starting at sample ``start``,
    ready ``seconds`` after the call."""

    audio: torch.Tensor
    start: int
    seconds: float


@dataclass
class ChatAnswer:
    """One answer.

    Attributes:
        audio: ``(T,)`` float32 in [-1, 1] at ``sample_rate`` Hz (0 samples when the model gave no speech).
        text: the model's own text answer (text-guided mode; "" in text-free mode).
        transcript: the ASR judge's transcript of ``audio`` (None without a judge).
        speech_ids: the answer's speech codes; question_ids: the question's.
        stopped: why generation ended: ``"end_of_speech"``, ``"eos"`` or ``"max_new_tokens"``.
    """

    audio: torch.Tensor
    sample_rate: int
    mode: str
    text: str
    transcript: str | None
    speech_ids: list[int]
    question_ids: list[int]
    stopped: str
    timings: ChatTimings = field(default_factory=ChatTimings)

    @property
    def shown_transcript(self) -> tuple[str, str | None]:
        """``(source, text)`` to show a user: the model's text answer in text-guided mode, else the judge's."""
        if self.mode == "text-guided":
            return "text answer (the model's own text)", self.text
        return "ASR judge's transcript of the spoken answer", self.transcript


class SpokenChat:
    """Answer spoken questions with a trained run's parts.

    Args:
        model: the speech LM (put in eval mode here).
        text_tokenizer: its HF text tokenizer (with a chat template).
        speech_tokenizer: wav -> ids; its codebook must be the LM's speech codes.
        decoder, vocoder: ids -> mel -> wav.
        judge: optional ASR model for the transcript of spoken answers.
        decoder_seed: seed of the decoder's noise (same seed, same audio; streamed or not).
    """

    def __init__(
        self,
        model: LayerSplitSpeechLM,
        text_tokenizer,
        speech_tokenizer: SpeechTokenizer,
        decoder: SpeechDecoder,
        vocoder: Vocoder,
        judge: CTCRecognizer | None = None,
        decoder_seed: int = 0,
    ) -> None:
        codes = model.special_ids.num_speech_codes
        for name, part in (("speech tokenizer", speech_tokenizer), ("decoder", decoder)):
            if part.codebook_size != codes:
                raise ValueError(
                    f"the {name} has {part.codebook_size} codes but the speech LM has {codes}: "
                    "the parts come from different runs"
                )
        self.model = model.eval()
        self.text_tokenizer = text_tokenizer
        self.speech_tokenizer = speech_tokenizer.eval()
        self.output = SpeechOutput(decoder.eval(), vocoder.eval(), judge.eval() if judge is not None else None)
        self.decoder_seed = decoder_seed

    @classmethod
    def from_run(cls, run: str | Path, device: str = "cpu", judge: bool = True, decoder_seed: int = 0) -> SpokenChat:
        """Load the parts a pipeline run saved (see :class:`~moss_components.evaluation.run_layout.RunLayout`):
        the latest speech LM (SFT, else PT-2, else PT-1) with its text tokenizer, the speech tokenizer, decoder,
        vocoder and, if present and ``judge``, the ASR judge."""
        from transformers import AutoTokenizer

        from moss_components.asr import load_recognizer
        from moss_components.checkpoints import load_moss_speech
        from moss_components.decoders import load_decoder
        from moss_components.evaluation.run_layout import RunLayout
        from moss_components.tokenizers import load_speech_tokenizer
        from moss_components.vocoders import load_vocoder

        layout = RunLayout(run)
        if not layout.root.is_dir():
            raise FileNotFoundError(f"run directory {str(layout.root)!r} does not exist")
        parts = {"speech tokenizer": layout.export("tokenizer"), "decoder": layout.decoder, "vocoder": layout.vocoder}
        for name, path in parts.items():
            if not (path / "config.yaml").is_file():
                raise FileNotFoundError(f"run {str(layout.root)!r} has no {name}: expected {path}/config.yaml")
        lm_dir = layout.speech_lm
        judge_dir = layout.export("judge")
        dev = torch.device(device)
        return cls(
            model=load_moss_speech(lm_dir, device=dev),
            text_tokenizer=AutoTokenizer.from_pretrained(lm_dir, local_files_only=True),
            speech_tokenizer=load_speech_tokenizer(parts["speech tokenizer"]).to(dev),
            decoder=load_decoder(parts["decoder"]).to(dev),
            vocoder=load_vocoder(parts["vocoder"]).to(dev),
            judge=load_recognizer(judge_dir).to(dev) if judge and (judge_dir / "config.yaml").is_file() else None,
            decoder_seed=decoder_seed,
        )

    @property
    def sample_rate(self) -> int:
        """Rate of the answer audio in Hz."""
        return self.output.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ the steps

    @torch.no_grad()
    def question_ids(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``(T,)``, ``(C, T)`` or ``(T, C)`` audio at ``sample_rate`` Hz (any rate, channel count, float or int PCM)
        -> ``(N,)`` speech ids; downmixing and resampling warn."""
        rate = self.speech_tokenizer.sample_rate
        # mono first: the tokenizer would read a (C, T) tensor as a batch of C clips
        mono = to_mono_float32(wav, sample_rate, rate, min_samples=self.speech_tokenizer.samples_per_frame,
                               name="question audio")  # fmt: skip
        out = self.speech_tokenizer.encode(mono, rate)
        if out.ids.ndim != 2:
            raise ValueError(f"chat needs a one-codebook speech tokenizer, got ids of shape {tuple(out.ids.shape)}")
        return out.ids[0, : int(out.lengths[0])].cpu()

    def prompt(self, question_ids: torch.Tensor, mode: str) -> torch.Tensor:
        """The generation prompt ``(1, L, 2)`` of a chat mode (``text-free`` | ``text-guided``)."""
        if mode not in CHAT_MODES:
            raise ValueError(f"chat mode {mode!r}; expected one of {sorted(CHAT_MODES)}")
        grid = build_sft_prompt(
            self.text_tokenizer, self.model.special_ids, CHAT_MODES[mode], None, question_ids, self.model.system_prompts
        )
        return grid[None].to(self.device)

    # ------------------------------------------------------------------ answering

    def answer(
        self,
        wav: torch.Tensor,
        sample_rate: int,
        mode: str = "text-free",
        stream: bool = False,
        sampling: SamplingConfig | None = None,
        on_chunk: Callable[[AudioChunk], None] | None = None,
    ) -> ChatAnswer:
        """Answer one spoken question; ``on_chunk`` is called with each audio chunk as soon as it is ready
        (streamed: many; one-shot: one). See :meth:`stream` for the other arguments."""
        chunks = self.stream(wav, sample_rate, mode, sampling, chunked=stream)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration as done:
                return done.value
            if on_chunk is not None:
                on_chunk(chunk)

    @torch.no_grad()
    def stream(
        self,
        wav: torch.Tensor,
        sample_rate: int,
        mode: str = "text-free",
        sampling: SamplingConfig | None = None,
        chunked: bool = True,
    ) -> Iterator[AudioChunk]:
        """Yield the answer's audio chunk by chunk; the generator's return value is the :class:`ChatAnswer`.

        Args:
            wav: the question, ``(T,)``, ``(C, T)`` or ``(T, C)``, float or int PCM, at ``sample_rate`` Hz.
            mode: ``text-free`` (the answer is spoken straight away) or ``text-guided`` (the model writes the answer
                in text, then speaks it).
            sampling: sampling settings (MOSS-Speech's defaults when None).
            chunked: decode speech while it is generated (False: all at once after generation).
        """
        sampling = sampling or SamplingConfig()
        t0 = time.perf_counter()
        timings = ChatTimings()
        question = self.question_ids(wav, sample_rate)
        prompt = self.prompt(question, mode)  # validates the mode before any work is timed as generation
        timings.encode_seconds = time.perf_counter() - t0

        ids = self.model.special_ids
        text_ids: list[int] = []
        speech_ids: list[int] = []
        audio: list[torch.Tensor] = []
        emitted = 0
        stopped = "max_new_tokens"
        speech = SpeechStream(self.output.decoder, self.output.vocoder, seed=self.decoder_seed) if chunked else None

        def emit(piece: torch.Tensor) -> AudioChunk | None:
            nonlocal emitted
            if piece.numel() == 0:
                return None
            piece = piece.float().cpu()
            chunk = AudioChunk(piece, emitted, time.perf_counter() - t0)
            if timings.first_audio_seconds is None:
                timings.first_audio_seconds = chunk.seconds
            audio.append(piece)
            emitted += piece.numel()
            return chunk

        with speech if speech is not None else nullcontext():
            steps = generate_steps(self.model, prompt, None, sampling, answer_mode="prompt")
            while True:
                t_step = time.perf_counter()
                try:
                    step, _, _ = next(steps)
                except StopIteration:
                    break
                timings.generation_seconds += time.perf_counter() - t_step
                timings.new_tokens += 1
                text, code = int(step.text[0]), int(step.speech[0])
                if text >= 0 and text != ids.text_start_of_speech and text not in ids.text_eos:
                    text_ids.append(text)
                if code >= 0 and code != ids.speech_end_of_speech:
                    speech_ids.append(code)
                    if speech is not None:
                        t_syn = time.perf_counter()
                        chunk = emit(speech.push([code]))
                        timings.synthesis_seconds += time.perf_counter() - t_syn
                        if chunk is not None:
                            yield chunk
                if code == ids.speech_end_of_speech:
                    stopped = "end_of_speech"  # the spoken answer is complete; what follows is template text
                    break
                if bool(step.finished[0]):
                    stopped = "eos"
                    break
            steps.close()
            t_syn = time.perf_counter()
            if speech is not None:
                chunk = emit(speech.flush())
            else:
                chunk = emit(self.output.speak([speech_ids], seed=self.decoder_seed)[0])
            timings.synthesis_seconds += time.perf_counter() - t_syn
            if chunk is not None:
                yield chunk

        timings.total_seconds = time.perf_counter() - t0
        if timings.first_audio_seconds is None:
            timings.first_audio_seconds = timings.total_seconds
        full = torch.cat(audio) if audio else torch.zeros(0)
        timings.audio_seconds = full.numel() / self.sample_rate
        transcript = None
        if self.output.judge is not None:
            t_asr = time.perf_counter()
            transcript = self.output.transcribe([full])[0]
            timings.transcribe_seconds = time.perf_counter() - t_asr
        text = self.text_tokenizer.decode(text_ids, skip_special_tokens=True) if mode == "text-guided" else ""
        return ChatAnswer(full, self.sample_rate, mode, text, transcript, speech_ids, question.tolist(), stopped,
                          timings)  # fmt: skip

"""From answer speech ids to a waveform and a transcript: decoder -> vocoder -> ASR judge."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moss_components.asr import CTCRecognizer
from moss_components.asr.ctc_head import CTCOutput
from moss_components.asr.recognizer import decode_ctc
from moss_components.decoders import SpeechDecoder
from moss_components.vocoders import Vocoder


@dataclass
class SpeechOutput:
    """The speech side of evaluation and chat.

    Args:
        decoder: ids -> log-mel.
        vocoder: log-mel -> waveform at ``decoder.sample_rate``.
        judge: an ASR model independent of the LM under test; None when only audio is wanted.
    """

    decoder: SpeechDecoder
    vocoder: Vocoder
    judge: CTCRecognizer | None = None

    @property
    def sample_rate(self) -> int:
        return self.vocoder.sample_rate

    @torch.no_grad()
    def speak(self, ids: list[list[int]], seed: int = 0) -> list[torch.Tensor]:
        """Per answer, ``(T,)`` float32 audio at ``sample_rate`` Hz; an empty answer gives 0 samples."""
        wavs: list[torch.Tensor] = []
        for row in ids:
            if not row:
                wavs.append(torch.zeros(0))
                continue
            mel = self.decoder.decode(torch.tensor([row], dtype=torch.long), seed=seed)
            wavs.append(self.vocoder(mel)[0].float().clamp(-1, 1))
        return wavs

    def _read(self, wavs: list[torch.Tensor]) -> list[CTCOutput | None]:
        """The judge's CTC output of each waveform; None for audio under 0.1 s (nothing a judge could read)."""
        if self.judge is None:
            raise ValueError("no ASR judge was given; pass judge= to transcribe answers")
        return [
            None if wav.numel() < self.sample_rate // 10 else self.judge.read(wav[None], self.sample_rate)
            for wav in wavs
        ]

    @torch.no_grad()
    def transcribe(self, wavs: list[torch.Tensor], candidates: list[str] | None = None) -> list[str]:
        """The judge's transcript of each waveform ("" for empty audio): greedy, or with ``candidates`` the most
        likely of those sentences."""
        return [decode_ctc(out, candidates)[0] if out is not None else "" for out in self._read(wavs)]

    @torch.no_grad()
    def transcribe_greedy_and_closed(
        self, wavs: list[torch.Tensor], candidates: list[str]
    ) -> tuple[list[str], list[str]]:
        """Both transcripts of each waveform from one pass of the judge: ``(greedy, closed-set over candidates)``."""
        outs = self._read(wavs)
        greedy = [decode_ctc(out)[0] if out is not None else "" for out in outs]
        closed = [decode_ctc(out, candidates)[0] if out is not None else "" for out in outs]
        return greedy, closed

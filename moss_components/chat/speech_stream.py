"""Speech ids -> audio, chunk by chunk: the decoder's chunked stream (with look-ahead) feeding a vocoder stream.

```
ids as generated ─► DecoderStream.push (a chunk of mel once its look-ahead ids arrived)
                 ─► VocoderStream.push (the samples no later frame can change) ─► audio chunk
```
Both stages are exact, so the concatenated chunks equal ``vocoder(decoder.decode(all ids))`` with the same decoder
noise seed, up to float rounding.
"""

from __future__ import annotations

from contextlib import ExitStack

import torch

from moss_components.chat.vocoder_stream import VocoderStream
from moss_components.decoders import SpeechDecoder
from moss_components.vocoders import Vocoder

__all__ = ["SpeechStream"]


class SpeechStream:
    """``with SpeechStream(decoder, vocoder) as s: audio = s.push(ids); ...; audio = s.flush()``.

    Args:
        decoder: a speech decoder with a ``streaming()`` context (``FlowMatchingDecoder``).
        vocoder: any vocoder (see :class:`VocoderStream` for when streaming is exact).
        seed: the decoder's noise seed; the one-shot audio to compare with is ``decoder.decode(ids, seed=seed)``.
        prompt_mel: optional speaker prompt ``(1, n_mels, F_p)`` log-mel.

    ``push`` takes ``(n,)`` or ``(1, n)`` new ids and returns ``(T,)`` float32 audio at ``vocoder.sample_rate``
    (``T`` may be 0); ``flush`` returns the rest.
    """

    def __init__(
        self, decoder: SpeechDecoder, vocoder: Vocoder, seed: int = 0, prompt_mel: torch.Tensor | None = None
    ) -> None:
        if not hasattr(decoder, "streaming"):
            raise TypeError(f"{type(decoder).__name__} cannot decode in chunks (no streaming()); streaming needs one")
        if decoder.sample_rate != vocoder.sample_rate or decoder.n_mels != vocoder.n_mels:
            raise ValueError(
                f"decoder makes {decoder.n_mels}-band mels at {decoder.sample_rate} Hz but the vocoder expects "
                f"{vocoder.n_mels} bands at {vocoder.sample_rate} Hz"
            )
        self.decoder, self.vocoder = decoder, vocoder
        self.seed, self.prompt_mel = seed, prompt_mel
        self._stack = ExitStack()
        self._mel_stream = None
        self._audio_stream: VocoderStream | None = None

    def __enter__(self) -> SpeechStream:
        self._mel_stream = self._stack.enter_context(
            self.decoder.streaming(batch_size=1, prompt_mel=self.prompt_mel, seed=self.seed)
        )
        self._audio_stream = VocoderStream(self.vocoder)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def ids_seen(self) -> int:
        """Ids pushed so far."""
        return 0 if self._mel_stream is None else self._mel_stream.ids.shape[1]

    @torch.no_grad()
    def push(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        if self._mel_stream is None:
            raise RuntimeError("use SpeechStream as a context manager: with SpeechStream(...) as s: ...")
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(1, -1)
        if ids.shape[1] == 0:
            return torch.zeros(0)
        mel = self._mel_stream.push(ids)
        if mel.shape[-1] == 0:
            return torch.zeros(0)
        return self._audio_stream.push(mel)[0].clamp(-1, 1)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        if self._mel_stream is None:
            raise RuntimeError("use SpeechStream as a context manager: with SpeechStream(...) as s: ...")
        mel = self._mel_stream.flush()
        head = self._audio_stream.push(mel) if mel.shape[-1] else torch.zeros(1, 0)
        return torch.cat([head, self._audio_stream.flush()], dim=-1)[0].clamp(-1, 1)

"""The special ids of the two-channel grid, kept in one place.

A sequence is a LongTensor ``(B, L, 2)``: channel 0 holds text ids, channel 1 holds speech ids. At a text position
the speech channel holds ``speech_pad``; at a speech position the text channel holds ``text_modality_pad`` and the
speech embedding is used. A speech segment is opened by the text token ``text_start_of_speech`` and closed by the
speech token ``speech_end_of_speech`` (MOSS-Speech's layout).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

TEXT_CHANNEL = 0
SPEECH_CHANNEL = 1


@dataclass(frozen=True)
class SpeechSpecialIds:
    """Special ids shared by the model, the data pipeline and generation.

    Args:
        text_start_of_speech: text id that opens a speech segment (MOSS-Speech: 151646).
        text_modality_pad: text-channel id at speech positions (MOSS-Speech: 151667).
        text_eos: text ids that end a turn or a sequence; generation stops on any of them.
        speech_end_of_speech: speech id that closes a speech segment (MOSS-Speech: 16384, the first id after the codes).
        speech_pad: speech-channel id at text positions (MOSS-Speech: 512).
        num_speech_codes: ids ``[0, num_speech_codes)`` are codec codes; ids at or above
            ``speech_end_of_speech + 1`` are never sampled.
    """

    text_start_of_speech: int
    text_modality_pad: int
    text_eos: tuple[int, ...]
    speech_end_of_speech: int
    speech_pad: int
    num_speech_codes: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "text_eos", tuple(int(t) for t in self.text_eos))
        if self.speech_end_of_speech < self.num_speech_codes:
            raise ValueError(
                f"speech_end_of_speech={self.speech_end_of_speech} must be >= "
                f"num_speech_codes={self.num_speech_codes}: codes are [0, num_speech_codes)"
            )
        negative = {k: v for k, v in self.to_dict().items() if k != "text_eos" and v < 0}
        if negative:
            raise ValueError(f"special ids must be >= 0, got {negative}")

    @classmethod
    def for_vocab(cls, text_vocab_size: int, num_speech_codes: int, text_eos: tuple[int, ...] = ()) -> SpeechSpecialIds:
        """Ids for a text vocabulary extended by two tokens and a speech vocabulary of ``num_speech_codes + 2``.

        Layout: text ``[0, V_text)`` as given, ``V_text`` = start-of-speech, ``V_text + 1`` = modality pad;
        speech ``[0, C)`` codes, ``C`` = end-of-speech, ``C + 1`` = pad. Use ``text_vocab_size + 2`` and
        ``num_speech_codes + 2`` as the embedding sizes.
        """
        return cls(
            text_start_of_speech=text_vocab_size,
            text_modality_pad=text_vocab_size + 1,
            text_eos=tuple(text_eos),
            speech_end_of_speech=num_speech_codes,
            speech_pad=num_speech_codes + 1,
            num_speech_codes=num_speech_codes,
        )

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer,
        num_speech_codes: int,
        start_of_speech_token: str = "<|speech_start|>",
        modality_pad_token: str = "<|speech_pad|>",
    ) -> SpeechSpecialIds:
        """Ids for an HF tokenizer that already has the two speech tokens (as MOSS-Speech reuses Qwen3's reserved
        tokens). Speech ids: ``[0, C)`` codes, ``C`` end-of-speech, ``C + 1`` pad; the speech vocabulary is ``C + 2``.
        Generation stops on the tokenizer's eos token and ``<|im_end|>`` where it has one.
        """
        vocab = tokenizer.get_vocab()
        missing = [t for t in (start_of_speech_token, modality_pad_token) if t not in vocab]
        if missing:
            raise ValueError(
                f"tokenizer has no token {missing}; add them as special tokens or name tokens it has "
                "(start_of_speech_token=..., modality_pad_token=...)"
            )
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        if "<|im_end|>" in vocab:
            eos.append(vocab["<|im_end|>"])
        return cls(
            text_start_of_speech=vocab[start_of_speech_token],
            text_modality_pad=vocab[modality_pad_token],
            text_eos=tuple(dict.fromkeys(eos)),
            speech_end_of_speech=num_speech_codes,
            speech_pad=num_speech_codes + 1,
            num_speech_codes=num_speech_codes,
        )

    @property
    def speech_vocab_size(self) -> int:
        """Embedding rows the speech table needs: every id up to the largest special one."""
        return max(self.speech_end_of_speech, self.speech_pad, self.num_speech_codes - 1) + 1

    @classmethod
    def moss_speech_release(cls) -> SpeechSpecialIds:
        """The ids of the released MOSS-Speech checkpoint (Qwen3 tokenizer; 16,384 codes)."""
        return cls(
            text_start_of_speech=151646,
            text_modality_pad=151667,
            text_eos=(151645, 151643),
            speech_end_of_speech=16384,
            speech_pad=512,
            num_speech_codes=16384,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["text_eos"] = list(self.text_eos)
        return d

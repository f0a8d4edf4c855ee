"""The ASR judge (a CTC recognizer independent of the model under test), the CTC vocabulary and CER."""

from moss_components.asr.ctc_head import CTCHead, CTCOutput
from moss_components.asr.ctc_vocab import (
    BLANK,
    CHARS,
    VOCAB_SIZE,
    cer,
    ctc_closed_set_decode,
    ctc_greedy_decode,
    normalize_text,
    text_to_ids,
)
from moss_components.asr.recognizer import CTCRecognizer, load_recognizer

__all__ = [
    "BLANK",
    "CHARS",
    "VOCAB_SIZE",
    "CTCHead",
    "CTCOutput",
    "CTCRecognizer",
    "cer",
    "ctc_closed_set_decode",
    "ctc_greedy_decode",
    "load_recognizer",
    "normalize_text",
    "text_to_ids",
]

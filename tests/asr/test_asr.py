import pytest
import torch

from moss_components.asr import (
    CHARS,
    VOCAB_SIZE,
    CTCRecognizer,
    cer,
    ctc_closed_set_decode,
    ctc_greedy_decode,
    load_recognizer,
    text_to_ids,
)
from moss_components.tokenizers import save_pretrained


def test_vocabulary():
    assert VOCAB_SIZE == 29 and CHARS[0] == " " and CHARS[1] == "'"
    assert text_to_ids("It's A b!") == [1 + CHARS.index(c) for c in "it's a b"]


def test_greedy_decode_collapses_repeats_and_blanks():
    seq = [0, 4, 4, 0, 4, 1, 5, 5]  # b b _ b ' ' c
    lp = torch.nn.functional.one_hot(torch.tensor([seq]), VOCAB_SIZE).float().log()
    assert ctc_greedy_decode(lp, torch.tensor([8])) == ["bb c"]
    assert ctc_greedy_decode(lp, torch.tensor([3])) == ["b"]


def _spelled(text: str, frames_per_char: int = 2, blur: float = 0.0) -> torch.Tensor:
    """``(1, N, V)`` log-probs that spell ``text`` (each character for a few frames, blanks between), with ``blur``
    of each frame's mass spread evenly over the whole vocabulary."""
    seq = []
    for i in text_to_ids(text):
        seq += [i] * frames_per_char + [0]
    probs = torch.nn.functional.one_hot(torch.tensor(seq), VOCAB_SIZE).float() * (1 - blur) + blur / VOCAB_SIZE
    return probs.log()[None]


def test_closed_set_decode_picks_the_sentence_that_was_said():
    candidates = ["the answer is new delhi", "the answer is tokyo", "the answer is oslo"]
    lp = _spelled("the answer is nu deli", blur=0.3)  # said by ear: greedy decoding spells it so
    assert ctc_greedy_decode(lp, torch.tensor([lp.shape[1]])) == ["the answer is nu deli"]
    assert ctc_closed_set_decode(lp, torch.tensor([lp.shape[1]]), candidates) == ["the answer is new delhi"]
    oslo = _spelled("the answer is oslo")
    both = torch.cat([torch.nn.functional.pad(oslo, (0, 0, 0, lp.shape[1] - oslo.shape[1]), value=0.0), lp])
    lengths = torch.tensor([oslo.shape[1], lp.shape[1]])
    assert ctc_closed_set_decode(both, lengths, candidates) == ["the answer is oslo", "the answer is new delhi"]
    # fewer frames than any candidate has labels: nothing fits, so nothing is claimed
    assert ctc_closed_set_decode(lp[:, :5], torch.tensor([5]), candidates) == [""]
    with pytest.raises(ValueError, match="non-empty candidate"):
        ctc_closed_set_decode(lp, torch.tensor([lp.shape[1]]), ["the answer", "!"])


def test_cer():
    assert cer(["abc"], ["abc"]) == 0
    assert cer(["abd", ""], ["abc", "xy"]) == pytest.approx(3 / 5)
    assert cer(["Hello, World"], ["hello world"]) == 0


def test_recognizer_rate_and_transcribe(tmp_path):
    rec = CTCRecognizer(n_mels=20, dim=32, depth=1, heads=2, head_depth=1).eval()
    assert rec.frame_rate == 25.0  # >= 25 frames/s for the judge
    out = rec.ctc_forward(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    assert out.log_probs.shape == (2, 25, VOCAB_SIZE) and out.lengths.tolist() == [25, 12]
    texts = rec.transcribe([torch.randn(16000) * 0.1, torch.randn(12000) * 0.1], 16000)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    save_pretrained(rec, tmp_path / "judge")
    again = load_recognizer(tmp_path / "judge")
    wav = torch.randn(1, 16000) * 0.1
    assert again.transcribe(wav, 16000) == rec.transcribe(wav, 16000)
    assert rec.transcribe(wav, 16000, candidates=["a b", "c"])[0] in ("a b", "c")


def test_recognizer_bad_input():
    rec = CTCRecognizer(n_mels=20, dim=32, depth=1, heads=2, head_depth=1).eval()
    with pytest.raises(ValueError, match="shorter than the minimum of 640"):
        rec.transcribe(torch.zeros(100), 16000)

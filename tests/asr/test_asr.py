import pytest
import torch

from moss_components.asr import CHARS, VOCAB_SIZE, CTCRecognizer, cer, ctc_greedy_decode, load_recognizer, text_to_ids
from moss_components.tokenizers import save_pretrained


def test_vocabulary():
    assert VOCAB_SIZE == 29 and CHARS[0] == " " and CHARS[1] == "'"
    assert text_to_ids("It's A b!") == [1 + CHARS.index(c) for c in "it's a b"]


def test_greedy_decode_collapses_repeats_and_blanks():
    seq = [0, 4, 4, 0, 4, 1, 5, 5]  # b b _ b ' ' c
    lp = torch.nn.functional.one_hot(torch.tensor([seq]), VOCAB_SIZE).float().log()
    assert ctc_greedy_decode(lp, torch.tensor([8])) == ["bb c"]
    assert ctc_greedy_decode(lp, torch.tensor([3])) == ["b"]


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


def test_recognizer_bad_input():
    rec = CTCRecognizer(n_mels=20, dim=32, depth=1, heads=2, head_depth=1).eval()
    with pytest.raises(ValueError, match="shorter than the minimum of 640"):
        rec.transcribe(torch.zeros(100), 16000)

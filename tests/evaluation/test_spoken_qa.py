import pytest
import torch

from moss_components.evaluation.spoken_qa import QAItem, answer_questions, left_pad, summarize
from moss_components.generation import SamplingConfig
from moss_components.model import LayerSplitSpeechLM
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks import ConfigTrunk

CONFIG = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip


def test_left_pad_keeps_prompts_right_aligned():
    a = torch.tensor([[1, 9], [2, 9]])
    b = torch.tensor([[3, 9]])
    grid, mask = left_pad([a, b], text_pad=0, speech_pad=7)
    assert grid[1].tolist() == [[0, 7], [3, 9]] and mask.tolist() == [[1, 1], [0, 1]]


def test_text_answers_are_scored_and_batching_does_not_change_them():
    trunk = ConfigTrunk(CONFIG, tokenizer="char")
    tok = trunk.load_tokenizer()
    ids = SpeechSpecialIds.from_tokenizer(tok, 16)
    model = LayerSplitSpeechLM.from_text_model(trunk.load(), 1, ids.speech_vocab_size, ids).eval()
    items = [QAItem(f"q{i}", q, "paris", tags={"heldout": i == 1}) for i, q in enumerate(["where?", "capital of x"])]
    config = SamplingConfig(greedy=True, max_new_tokens=6)
    batched = answer_questions(model, tok, items, "t2t", sampling=config, batch_size=2, progress=False)
    alone = [answer_questions(model, tok, [it], "t2t", sampling=config, progress=False)[0] for it in items]
    assert [a.text for a in batched] == [a.text for a in alone]
    # a random model does not know the answer: the score says so rather than passing by construction
    summary = summarize(batched)
    assert summary["n"] == 2 and summary["accuracy"] == 0.0 and summary["n[heldout=True]"] == 1


def test_spoken_answers_need_a_judge():
    trunk = ConfigTrunk(CONFIG, tokenizer="char")
    tok = trunk.load_tokenizer()
    ids = SpeechSpecialIds.from_tokenizer(tok, 16)
    model = LayerSplitSpeechLM.from_text_model(trunk.load(), 1, ids.speech_vocab_size, ids)
    with pytest.raises(ValueError, match="answers in speech"):
        answer_questions(model, tok, [QAItem("q", "x?", "y")], "t2s")


def test_questions_are_asked_with_the_model_own_system_prompts(monkeypatch):
    from moss_components.evaluation import spoken_qa

    trunk = ConfigTrunk(CONFIG, tokenizer="char")
    tok = trunk.load_tokenizer()
    ids = SpeechSpecialIds.from_tokenizer(tok, 16)
    model = LayerSplitSpeechLM.from_text_model(trunk.load(), 1, ids.speech_vocab_size, ids).eval()
    model.system_prompts = {"t2t": "t2t"}
    seen = []
    build = spoken_qa.build_sft_prompt
    monkeypatch.setattr(spoken_qa, "build_sft_prompt", lambda *a: seen.append(a[-1]) or build(*a))
    answer_questions(model, tok, [QAItem("q", "where?", "paris")], "t2t",
                     sampling=SamplingConfig(greedy=True, max_new_tokens=2), progress=False)  # fmt: skip
    assert seen == [{"t2t": "t2t"}]


class _ByEarJudge:
    """Speech side whose judge spells the answer by ear ("parris"), and says the right sentence from a closed set."""

    judge = object()

    def speak(self, ids):
        return [torch.zeros(1600) for _ in ids]

    def transcribe(self, wavs, candidates=None):
        return ["the answer is paris" if candidates else "the answer is parris" for _ in wavs]

    def transcribe_greedy_and_closed(self, wavs, candidates):
        return self.transcribe(wavs), self.transcribe(wavs, candidates)


def test_closed_set_judging_is_scored_beside_the_open_transcript():
    trunk = ConfigTrunk(CONFIG, tokenizer="char")
    tok = trunk.load_tokenizer()
    ids = SpeechSpecialIds.from_tokenizer(tok, 16)
    model = LayerSplitSpeechLM.from_text_model(trunk.load(), 1, ids.speech_vocab_size, ids).eval()
    item = QAItem("q", "where?", "paris", question_speech=torch.tensor([1, 2, 3]))
    config = SamplingConfig(greedy=True, max_new_tokens=3)
    [closed] = answer_questions(model, tok, [item], "s2s", _ByEarJudge(), config, progress=False,
                                answer_candidates=["the answer is paris", "the answer is oslo"])  # fmt: skip
    assert (closed.transcript, closed.correct) == ("the answer is paris", True)
    assert (closed.open_transcript, closed.correct_open) == ("the answer is parris", False)
    assert summarize([closed])["accuracy"] == 1.0 and summarize([closed])["accuracy_open"] == 0.0
    [greedy] = answer_questions(model, tok, [item], "s2s", _ByEarJudge(), config, progress=False)
    assert (greedy.transcript, greedy.correct, greedy.open_transcript) == ("the answer is parris", False, None)
    assert "accuracy_open" not in summarize([greedy])

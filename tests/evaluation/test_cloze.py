"""Cloze metrics: checked on a bigram model whose log-probabilities are a table we set (so every score has an
analytic value), against a real split model's own loss, and on the micro corpus' items."""

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from moss_components.data.grid import IGNORE_INDEX
from moss_components.evaluation.cloze import (
    SpeechClozeItem,
    TextClozeItem,
    cloze_accuracy,
    load_cloze_items,
    load_statement_speech,
    pair_facts,
    sample_by_pair,
    sequence_logprobs,
    speech_nll,
    spoken_cloze_accuracy,
    spoken_cloze_scores,
    text_cloze_accuracy,
    text_cloze_scores,
    wrong_answers,
)
from moss_components.model import LayerSplitSpeechLM, SpeechLMOutput
from moss_components.routers import DualBranchRouter, NoSplitRouter
from moss_components.special_ids import SpeechSpecialIds
from moss_components.text.char_tokenizer import build_char_tokenizer
from moss_components.trunks import ConfigTrunk

CODES = 8


class BigramLM(nn.Module):
    """Logits at t depend only on the token at t: ``log_p_text[text id]`` and ``log_p_speech[speech id]``, rows of
    log-probabilities, so ``log_softmax`` returns them unchanged and every score is a sum of table entries."""

    def __init__(self, special_ids, log_p_text, log_p_speech, joint=False):
        super().__init__()
        self.special_ids, self.log_p_text, self.log_p_speech = special_ids, log_p_text, log_p_speech
        self.router = NoSplitRouter() if joint else DualBranchRouter()
        self.system_prompts = None  # the library's default SFT prompts

    def forward(self, input_ids, attention_mask=None):
        text, speech = input_ids[..., 0], input_ids[..., 1]
        return SpeechLMOutput(text_logits=self.log_p_text[text], speech_logits=self.log_p_speech[speech])


class TextBigramLM(nn.Module):
    """The same as a Hugging Face causal LM: ``(B, L)`` ids in, ``.logits`` out, no ``special_ids``."""

    def __init__(self, log_p):
        super().__init__()
        self.log_p = log_p

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.log_p[input_ids])


def _setup(seed=0):
    tok = build_char_tokenizer()
    special = SpeechSpecialIds.from_tokenizer(tok, CODES)
    g = torch.Generator().manual_seed(seed)
    log_p_text = torch.randn(len(tok), len(tok), generator=g).log_softmax(-1)
    log_p_speech = torch.randn(special.speech_vocab_size, special.speech_vocab_size, generator=g).log_softmax(-1)
    return tok, special, log_p_text, log_p_speech


def _expected(inp, lab, log_p_text, log_p_speech):
    """The analytic score, one position at a time."""
    total = 0.0
    for t in range(1, len(inp)):
        if lab[t, 0] != IGNORE_INDEX:
            total += log_p_text[inp[t - 1, 0], lab[t, 0]].item()
        if lab[t, 1] != IGNORE_INDEX:
            total += log_p_speech[inp[t - 1, 1], lab[t, 1]].item()
    return total


def _random_grid(special, length, g):
    inp = torch.stack([torch.randint(0, 30, (length,), generator=g), torch.full((length,), special.speech_pad)], 1)
    speech = torch.rand(length, generator=g) < 0.5
    inp[speech, 0] = special.text_modality_pad
    inp[speech, 1] = torch.randint(0, CODES, (int(speech.sum()),), generator=g)
    lab = inp.clone()
    lab[speech, 0] = IGNORE_INDEX
    lab[~speech, 1] = IGNORE_INDEX
    lab[torch.rand(length, generator=g) < 0.3] = IGNORE_INDEX
    return inp, lab


@pytest.mark.parametrize("batch_size", [1, 3], ids=["one-per-batch", "padded-batches"])
def test_sequence_logprobs_is_the_sum_of_the_table_entries(batch_size):
    tok, special, lt, ls = _setup()
    g = torch.Generator().manual_seed(1)
    grids = [_random_grid(special, n, g) for n in (5, 17, 1, 63, 9)]
    got = sequence_logprobs(BigramLM(special, lt, ls), [x for x, _ in grids], [y for _, y in grids], 0, batch_size)
    want = [_expected(x, y, lt, ls) for x, y in grids]
    assert got.tolist() == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_joint_softmax_normalizes_over_both_vocabularies():
    tok, special, lt, ls = _setup()
    g = torch.Generator().manual_seed(2)
    inp, lab = _random_grid(special, 20, g)
    got = sequence_logprobs(BigramLM(special, lt, ls, joint=True), [inp], [lab])[0].item()
    # each row of the two tables sums to probability 1, so the joint softmax halves every probability
    scored = int((lab[1:] != IGNORE_INDEX).sum())
    assert got == pytest.approx(_expected(inp, lab, lt, ls) - scored * math.log(2), rel=1e-5)


def test_a_text_model_without_special_ids_scores_channel_zero():
    tok, special, lt, _ = _setup()
    inp, lab = _random_grid(special, 12, torch.Generator().manual_seed(3))
    inp[:, 1], lab[:, 1] = 0, IGNORE_INDEX
    inp[:, 0] = inp[:, 0].clamp(max=30)
    lab[:, 0] = torch.where(lab[:, 0] == IGNORE_INDEX, lab[:, 0], inp[:, 0])
    got = sequence_logprobs(TextBigramLM(lt), [inp], [lab])[0].item()
    assert got == pytest.approx(_expected(inp, lab, lt, lt), rel=1e-5)


def _prefer(table, after, token, p=0.9):
    """Make ``token`` follow ``after`` with probability ``p`` (the rest uniform)."""
    row = torch.full((table.shape[1],), (1 - p) / (table.shape[1] - 1))
    row[token] = p
    table[after] = row.log()


def test_text_cloze_follows_the_model_preference():
    tok, special, _, ls = _setup()
    uniform = torch.full((len(tok), len(tok)), -math.log(len(tok)))
    items = [TextClozeItem("f", "the sky is", "red", "tan"), TextClozeItem("g", "snow is", "red", "tan")]
    space, r, t = (tok.convert_tokens_to_ids(c) for c in " rt")
    likes_right = uniform.clone()
    _prefer(likes_right, space, r)
    assert text_cloze_accuracy(BigramLM(special, likes_right, ls), tok, items) == 1.0
    likes_wrong = uniform.clone()
    _prefer(likes_wrong, space, t)
    assert text_cloze_accuracy(BigramLM(special, likes_wrong, ls), tok, items) == 0.0
    # the Hugging Face path gives the same scores as the grid path
    grid_scores = text_cloze_scores(BigramLM(special, likes_right, ls), tok, items)
    text_scores = text_cloze_scores(TextBigramLM(likes_right), tok, items)
    assert torch.allclose(grid_scores[0], text_scores[0]) and torch.allclose(grid_scores[1], text_scores[1])


def test_text_cloze_compares_total_likelihoods():
    # uniform model: each ending character costs log V, so the shorter ending wins, whichever is right
    tok, special, _, ls = _setup()
    uniform = torch.full((len(tok), len(tok)), -math.log(len(tok)))
    model = BigramLM(special, uniform, ls)
    right, wrong = text_cloze_scores(model, tok, [TextClozeItem("f", "x is", "ab", "abc")])
    assert right.item() == pytest.approx(-3 * math.log(len(tok)))  # " ", "a", "b"
    assert wrong.item() == pytest.approx(-4 * math.log(len(tok)))
    assert text_cloze_accuracy(model, tok, [TextClozeItem("f", "x is", "ab", "abc")]) == 1.0
    assert text_cloze_accuracy(model, tok, [TextClozeItem("f", "x is", "abc", "ab")]) == 0.0


def test_spoken_cloze_scores_only_the_spoken_answer():
    tok, special, lt, _ = _setup()
    uniform = torch.full((special.speech_vocab_size,) * 2, -math.log(special.speech_vocab_size))
    items = [SpeechClozeItem("q", "f", torch.tensor([5, 6, 7]), torch.tensor([1, 2]), torch.tensor([1, 4]))]
    likes_right = uniform.clone()
    _prefer(likes_right, 1, 2)
    model = BigramLM(special, lt, likes_right)
    right, wrong = spoken_cloze_scores(model, tok, items)
    # the answer's first id follows start-of-speech (a text position: speech pad), then 1 -> 2 or 1 -> 4, then eos
    pad, eos = special.speech_pad, special.speech_end_of_speech
    lp = likes_right
    assert right.item() == pytest.approx((lp[pad, 1] + lp[1, 2] + lp[2, eos]).item(), rel=1e-5)
    assert wrong.item() == pytest.approx((lp[pad, 1] + lp[1, 4] + lp[4, eos]).item(), rel=1e-5)
    assert spoken_cloze_accuracy(model, tok, items) == 1.0
    likes_wrong = uniform.clone()
    _prefer(likes_wrong, 1, 4)
    assert spoken_cloze_accuracy(BigramLM(special, lt, likes_wrong), tok, items) == 0.0


def test_speech_nll_is_the_mean_over_ids_and_end_of_speech():
    tok, special, lt, ls = _setup()
    model = BigramLM(special, lt, ls)
    pad, eos = special.speech_pad, special.speech_end_of_speech
    one = -(ls[pad, 1] + ls[1, 2] + ls[2, eos]).item()  # start-of-speech (a text position) -> 1 -> 2 -> end
    two = -(ls[pad, 3] + ls[3, eos]).item()
    assert speech_nll(model, [torch.tensor([1, 2]), torch.tensor([3])]) == pytest.approx((one + two) / 5, rel=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        speech_nll(model, [])


def test_ties_count_as_wrong_and_bad_input_is_an_error():
    assert cloze_accuracy(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0])) == 0.5
    with pytest.raises(ValueError, match="non-empty"):
        cloze_accuracy(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="at least one item"):
        text_cloze_accuracy(None, None, [])


@pytest.mark.parametrize("router", [DualBranchRouter, NoSplitRouter], ids=["dual-branch", "no-split"])
def test_a_split_model_scores_what_its_own_loss_says(router):
    config = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
              "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip
    trunk = ConfigTrunk(config, tokenizer="char")
    special = SpeechSpecialIds.from_tokenizer(trunk.load_tokenizer(), CODES)
    model = LayerSplitSpeechLM.from_text_model(trunk.load(), 2, special.speech_vocab_size, special, router()).eval()
    g = torch.Generator().manual_seed(4)
    grids = [_random_grid(special, n, g) for n in (7, 30, 12)]
    got = sequence_logprobs(model, [x for x, _ in grids], [y for _, y in grids], batch_size=3)
    for (inp, lab), score in zip(grids, got):
        out = model(input_ids=inp[None], labels=lab[None])
        count = int((lab[1:] != IGNORE_INDEX).sum())
        assert score.item() == pytest.approx(-out.loss.item() * count, rel=1e-4)


def test_facts_pair_up_and_swap_their_endings():
    answers = ["x", "y", "x", "z", "x", "x"]
    facts = [{"id": f"c{i}", "category": "c", "answer": a} for i, a in enumerate(answers)]
    facts.append({"id": "lonely", "category": "d", "answer": "w"})
    partner, wrong = pair_facts(facts, seed=0), wrong_answers(facts, seed=0)
    assert partner["lonely"] is None and "lonely" not in wrong
    paired = [f for f in facts if partner[f["id"]] is not None]
    assert len(paired) == 4  # y and z each pair with an x; the other two x are odd ones out
    by_id = {f["id"]: f for f in facts}
    for f in facts[:6]:
        p = partner[f["id"]]
        assert wrong[f["id"]] in {"x", "y", "z"} - {f["answer"]}
        if p is not None:
            assert partner[p] == f["id"] and wrong[f["id"]] == by_id[p]["answer"] and wrong[p] == f["answer"]
    assert pair_facts(facts[::-1], seed=0) == partner  # seeded per category: independent of the order given


def test_sample_by_pair_keeps_pairs_whole():
    items = [TextClozeItem(f"f{i}", "c", "a", "b", pair=f"p{i // 2}") for i in range(10)]
    chosen = sample_by_pair(items, 5, seed=1)
    assert len(chosen) == 4 and all(sum(c.pair == it.pair for c in chosen) == 2 for it in chosen)
    assert sample_by_pair(items, None) == items and sample_by_pair(items, 50) == items


def test_items_of_the_micro_corpus(micro_corpus, micro_cache, tmp_path):
    (tmp_path / "corpus").symlink_to(micro_corpus)
    (tmp_path / "speech_ids").symlink_to(micro_cache)
    text_items, speech_items = load_cloze_items(tmp_path, "test", seed=0)
    facts = {f["id"]: f for f in map(json.loads, (micro_corpus / "facts.jsonl").read_text().splitlines())}
    qa = [json.loads(line) for line in (micro_corpus / "qa" / "test.jsonl").read_text().splitlines()]
    assert len(text_items) == len(facts) == 12 and len(speech_items) == len(qa) == 24
    for it in text_items:
        fact = facts[it.fact_id]
        assert f"{it.context} {it.right}" in fact["statements"] and it.right == fact["answer"]
        assert it.wrong != it.right and it.wrong in {f["answer"] for f in facts.values() if f["category"] ==
                                                     fact["category"]}  # fmt: skip
    wrong = {it.fact_id: it.wrong for it in text_items}
    by_answer = {}
    for it in speech_items:
        assert not torch.equal(it.right, it.wrong)
        by_answer.setdefault(facts[it.fact_id]["answer"], []).append(it.right)
    # every line of a fact shares one answer recording, and the wrong one is another fact's recording
    assert all(all(torch.equal(a, v[0]) for a in v) for v in by_answer.values())
    for it in random.Random(0).sample(speech_items, 5):
        assert torch.equal(it.wrong, by_answer[wrong[it.fact_id]][0])
    statements = load_statement_speech(tmp_path, "test")
    assert len(statements) == 12 and all(len(ids) > 0 for _, ids in statements)
    assert {text for text, _ in statements} <= {st for f in facts.values() for st in f["statements"]}
    # a model blind to the context (here a bigram model: an ending's score depends on the ending alone) scores
    # exactly chance on paired items, in text and in speech
    tok, special, lt, ls = _setup()
    special = SpeechSpecialIds.from_tokenizer(tok, 32)  # the stand-in tokenizer's codebook
    ls = torch.randn(special.speech_vocab_size, special.speech_vocab_size).log_softmax(-1)
    blind = BigramLM(special, lt, ls)
    assert all(it.pair.count("|") == 1 for it in text_items)  # two facts per category, distinct answers: all paired
    assert text_cloze_accuracy(blind, tok, text_items) == 0.5
    assert spoken_cloze_accuracy(blind, tok, speech_items) == 0.5

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from moss_components.data.grid import IGNORE_INDEX, check_grid, parse_grid, speech_positions
from moss_components.data.packing import block_causal_mask, collate_packed, collate_padded, pack_greedy
from moss_components.data.pretrain_tasks import (
    build_asr,
    build_asr_prompt,
    build_interleaved,
    build_speech_only,
    build_text,
    build_tts,
    build_tts_prompt,
)
from moss_components.data.sft import (
    SFT_MODES,
    SYSTEM_PROMPTS,
    build_sft_example,
    build_sft_prompt,
    mode_io,
    resolve_system_prompts,
)
from moss_components.special_ids import SpeechSpecialIds
from moss_components.text.char_tokenizer import build_char_tokenizer

TOK = build_char_tokenizer()
SP = SpeechSpecialIds.for_vocab(len(TOK), 32, text_eos=(TOK.eos_token_id,))
EOS = TOK.eos_token_id
S1, S2 = torch.tensor([3, 1, 4, 1, 5]), torch.tensor([9, 2, 6])


def _decode(ids):
    return TOK.decode(ids.tolist())


def test_speech_only_layout_and_labels():
    inp, lab = build_speech_only(S1, SP)
    check_grid(inp, lab, SP)
    assert inp[0].tolist() == [SP.text_start_of_speech, SP.speech_pad]
    assert inp[1:, 0].eq(SP.text_modality_pad).all()
    assert inp[1:, 1].tolist() == S1.tolist() + [SP.speech_end_of_speech]
    assert lab[0].tolist() == [IGNORE_INDEX, IGNORE_INDEX]
    assert lab[1:, 1].tolist() == S1.tolist() + [SP.speech_end_of_speech] and lab[:, 0].eq(IGNORE_INDEX).all()
    assert [(k, v.tolist()) for k, v in parse_grid(inp, SP)] == [("speech", S1.tolist())]


def test_asr_and_tts_round_trip_and_mask_boundaries():
    inp, lab = build_asr(S1, "the answer is paris", TOK, SP)
    check_grid(inp, lab, SP)
    (k1, s), (k2, t) = parse_grid(inp, SP)
    assert (k1, k2) == ("speech", "text") and torch.equal(s, S1) and _decode(t[:-1]) == "the answer is paris"
    n = len(S1) + 2  # sos + codes + eos_speech
    assert lab[:n].eq(IGNORE_INDEX).all(), "no loss on the speech of ASR"
    assert lab[n:, 0].tolist() == t.tolist() and t[-1] == EOS

    inp, lab = build_tts("the answer is paris", S2, TOK, SP)
    check_grid(inp, lab, SP)
    (k1, t), (k2, s) = parse_grid(inp, SP)
    assert _decode(t) == "the answer is paris" and torch.equal(s, S2)
    m = len(t)
    assert lab[:m].eq(IGNORE_INDEX).all(), "no loss on the text of TTS"
    assert lab[m, 0] == SP.text_start_of_speech, "TTS learns to open speech"
    assert lab[m + 1 :, 1].tolist() == S2.tolist() + [SP.speech_end_of_speech]


def test_interleaved_alternates_and_round_trips():
    sents = [("one plus one is two", S1), ("the sky is blue", S2), ("snow is white", S1)]
    inp, lab = build_interleaved(sents, ["text", "speech", "text"], TOK, SP)
    check_grid(inp, lab, SP)
    parts = parse_grid(inp, SP)
    assert [k for k, _ in parts] == ["text", "speech", "text"]
    assert _decode(parts[0][1]) == "one plus one is two" and torch.equal(parts[1][1], S2)
    assert _decode(parts[2][1][:-1]) == " snow is white" and parts[2][1][-1] == EOS
    assert (lab[1:] != IGNORE_INDEX).any(-1).all(), "loss everywhere but the first token"


def test_text_replay():
    inp, lab = build_text("paris is a big city.", TOK, SP)
    check_grid(inp, lab, SP)
    assert not speech_positions(inp, SP).any() and _decode(inp[:-1, 0]) == "paris is a big city."


@pytest.mark.parametrize("mode", SFT_MODES)
def test_sft_loss_only_on_the_assistant_turn_and_prompt_is_a_prefix(mode):
    src, out, guided = mode_io(mode)
    kw = dict(question_text="what is the capital of france", question_speech=S1)
    inp, lab = build_sft_example(TOK, SP, mode, **kw, answer_text="the answer is paris", answer_speech=S2)
    check_grid(inp, lab, SP)
    prompt = build_sft_prompt(TOK, SP, mode, **kw)
    assert torch.equal(inp[: len(prompt)], prompt), "the generation prompt is exactly the trained prefix"
    assert lab[: len(prompt)].eq(IGNORE_INDEX).all(), "no loss on system or user turns"
    if out == "speech" and not guided:
        assert prompt[-1, 0] == SP.text_start_of_speech, "text-free: the prompt ends in start-of-speech"
    answer = lab[len(prompt) :]
    assert (answer != IGNORE_INDEX).any(-1).all(), "loss on every assistant position"
    rendered = "".join(_decode(v) if k == "text" else "<S>" for k, v in parse_grid(inp, SP))
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_end|>\n")
    assert ("what is the capital of france" in rendered) == (src == "text")
    assert ("the answer is paris" in rendered) == (out == "text" or guided)
    assert rendered.count("<S>") == (src == "speech") + (out == "speech")


def test_sft_with_the_model_own_system_prompts():
    tags = {"s2t": "s2t", "s2s": "s2s"}
    kw = dict(question_speech=S1, answer_text="the answer is paris")
    inp, lab = build_sft_example(TOK, SP, "s2t", **kw, system_prompts=tags)
    prompt = build_sft_prompt(TOK, SP, "s2t", question_speech=S1, system_prompts=tags)
    assert torch.equal(inp[: len(prompt)], prompt), "the generation prompt is exactly the trained prefix"
    system = _decode(inp[: len(prompt), 0]).split("<|im_end|>")[0]
    assert system == "<|im_start|>system\ns2t"
    default, _ = build_sft_example(TOK, SP, "s2t", **kw)
    assert len(default) - len(inp) == len(SYSTEM_PROMPTS["s2t"]) - 3, "one character token less per character"
    # modes without an override keep the default prompt
    assert resolve_system_prompts(tags)["t2t"] == SYSTEM_PROMPTS["t2t"]


@pytest.mark.parametrize(
    "prompts, match",
    [
        ({"s2x": "s2x"}, "unknown SFT mode 's2x'"),
        ({"s2t": " "}, "system prompt of mode 's2t' is ' '"),
        ({"s2t": "go", "t2t": "go"}, "modes 't2t' and 's2t' share the system prompt 'go'"),
    ],
)
def test_bad_system_prompts_are_named(prompts, match):
    with pytest.raises(ValueError, match=match):
        build_sft_example(TOK, SP, "s2t", question_speech=S1, answer_text="paris", system_prompts=prompts)


def test_sft_with_a_bpe_chat_tokenizer():
    """Any HF tokenizer with a chat template works (here a BPE one built offline with a Qwen-style template)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core.train_from_iterator(
        ["what is the capital of france the answer is paris listen read"] * 10,
        trainers.BpeTrainer(vocab_size=300, special_tokens=specials),
    )
    from tokenizers import decoders

    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tok.chat_template = TOK.chat_template
    sp = SpeechSpecialIds.for_vocab(len(tok), 32)
    inp, lab = build_sft_example(tok, sp, "s2t", question_speech=S1, answer_text="the answer is paris")
    check_grid(inp, lab, sp)
    ans = lab[:, 0][lab[:, 0] != IGNORE_INDEX]
    assert tok.decode(ans.tolist()).startswith("the answer is paris<|im_end|>")


def test_padded_and_packed_batches():
    docs = [build_tts("a b", S1, TOK, SP), build_asr(S2, "c", TOK, SP), build_text("hello", TOK, SP)]
    b = collate_padded(docs, SP)
    L = max(len(d[0]) for d in docs)
    assert b["input_ids"].shape == (3, L, 2) and b["attention_mask"].sum(1).tolist() == [len(d[0]) for d in docs]
    assert b["labels"][b["attention_mask"] == 0].eq(IGNORE_INDEX).all()
    bins = pack_greedy([len(d[0]) for d in docs], 20)
    assert all(sum(len(docs[i][0]) for i in row) <= 20 for row in bins) and sorted(sum(bins, [])) == [0, 1, 2]
    p = collate_packed([[docs[0], docs[1]], [docs[2]]], SP, length=20)
    n0, n1, n2 = (len(d[0]) for d in docs)
    assert "attention_mask" not in p
    assert p["position_ids"][0].tolist() == list(range(n0)) + list(range(n1)) + list(range(20 - n0 - n1))
    assert p["cu_seqlens"].tolist() == [0, n0, n0 + n1, 20, 20 + n2, 40] and p["max_seqlen"] == max(n0, n1, 20 - n2)
    assert p["cu_seqlens"].dtype == torch.int32 and p["num_documents"].tolist() == [2, 1]
    assert torch.equal(p["input_ids"][0, n0 : n0 + n1], docs[1][0])
    assert p["labels"][1, n2:].eq(IGNORE_INDEX).all()


def _tiny_qwen3():
    cfg = Qwen3Config(
        vocab_size=len(TOK) + 2,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
    )
    return Qwen3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packing_never_attends_across_documents(attn):
    """A packed row (position_ids restarting, attention_mask None) gives each document the logits it has alone.

    transformers only detects packing without a KV cache: training code must pass ``use_cache=False`` (the
    default ``use_cache=True`` builds a cache even in train mode, and then documents see each other)."""
    torch.manual_seed(0)
    model = _tiny_qwen3()
    model.config._attn_implementation = attn
    docs = [build_text(t, TOK, SP) for t in ("what is one plus one", "the capital of peru is lima", "hot")]
    p = collate_packed([docs], SP, length=64)
    ids = p["input_ids"][..., 0]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=p["position_ids"], attention_mask=None, use_cache=False).logits
        explicit = model(
            input_ids=ids,
            position_ids=p["position_ids"],
            use_cache=False,
            attention_mask=block_causal_mask(p["document_ids"]),
        ).logits
        cu = p["cu_seqlens"].tolist()
        for d, (inp, _) in enumerate(docs):
            alone = model(input_ids=inp[None, :, 0], use_cache=False).logits[0]
            torch.testing.assert_close(packed[0, cu[d] : cu[d + 1]], alone, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(explicit[0, cu[d] : cu[d + 1]], alone, atol=1e-5, rtol=1e-5)
        # And the test can fail: without restarting positions the second document sees the first.
        leaky = model(input_ids=ids, use_cache=False).logits
        assert not torch.allclose(leaky[0, cu[1] : cu[2]], packed[0, cu[1] : cu[2]], atol=1e-3)
        with_cache = model(input_ids=ids, position_ids=p["position_ids"], use_cache=True).logits
        assert not torch.allclose(with_cache[0, cu[1] : cu[2]], packed[0, cu[1] : cu[2]], atol=1e-3)


def test_asr_and_tts_prompts_are_the_trained_prefixes():
    inp, lab = build_asr(S1, "the answer is paris", TOK, SP)
    prompt = build_asr_prompt(S1, SP)
    assert torch.equal(inp[: len(prompt)], prompt) and lab[: len(prompt)].eq(IGNORE_INDEX).all()
    inp, lab = build_tts("the answer is paris", S2, TOK, SP)
    prompt = build_tts_prompt("the answer is paris", TOK, SP)
    assert torch.equal(inp[: len(prompt)], prompt) and prompt[-1, 0] == SP.text_start_of_speech

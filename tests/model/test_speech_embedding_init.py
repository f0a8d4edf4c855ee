"""CTC-aligned speech embeddings: each code's row is the mixture of the LLM's character embeddings under the
posteriors the tokenizer's CTC head gives it (blank left out), at the text table's mean norm."""

import math

import pytest
import torch

from moss_components.asr.ctc_vocab import BLANK, CHARS, VOCAB_SIZE
from moss_components.model import CTCAlignedInit, LayerSplitSpeechLM
from moss_components.model.speech_embedding_init import aligned_embeddings, ctc_code_posteriors
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks import ConfigTrunk

CONFIG = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip


class ScriptedReader:
    """A tokenizer whose CTC head reads code ``c`` as: sub-frame 0 character ``CHARS[c % 28]``, sub-frame 1 blank,
    sub-frame 2 half ``CHARS[c % 28]`` and half ``CHARS[(c + 1) % 28]``."""

    codebook_size = 40

    def eval(self):
        return self

    def ids_to_ctc(self, ids, lengths):
        b, n = ids.shape
        probs = torch.zeros(b, n, 3, VOCAB_SIZE)
        first, second = ids % len(CHARS) + 1, (ids + 1) % len(CHARS) + 1
        probs.scatter_(-1, first[..., None, None].expand(b, n, 1, 1), 1.0)  # sub-frame 0
        probs[:, :, 1] = 0
        probs[:, :, 1, BLANK] = 1.0
        probs[:, :, 2].scatter_(-1, first[..., None], 0.5)
        probs[:, :, 2].scatter_add_(-1, second[..., None], torch.full((b, n, 1), 0.5))
        return probs.reshape(b, n * 3, VOCAB_SIZE).clamp_min(1e-30).log(), lengths * 3


def test_posteriors_sum_each_codes_subframes_and_padding_does_not_count():
    speech = [torch.tensor([0, 1, 1]), torch.tensor([1])]
    post = ctc_code_posteriors(ScriptedReader(), speech, batch_size=2)
    assert post.shape == (40, VOCAB_SIZE)
    assert post[1].sum().item() == pytest.approx(3 * 3)  # code 1 occurs 3 times, 3 sub-frames each
    assert post[0, BLANK].item() == pytest.approx(1) and post[0, 1].item() == pytest.approx(1.5)
    assert post[2:].sum() == 0  # code 0 pads the short sequence: counted once only, where it really occurs


def test_aligned_rows_are_the_character_mixtures_at_the_mean_norm():
    torch.manual_seed(0)
    chars = torch.randn(len(CHARS), 8)
    post = torch.zeros(3, VOCAB_SIZE, dtype=torch.float64)
    post[0, 1 + CHARS.index("a")] = 3.0
    post[0, 1 + CHARS.index("b")] = 1.0
    post[0, BLANK] = 100.0  # blank does not dilute the mixture
    post[1, BLANK] = 5.0  # blank only: not usable
    rows, usable = aligned_embeddings(post, chars, norm=2.0)
    expected = 0.75 * chars[CHARS.index("a")] + 0.25 * chars[CHARS.index("b")]
    assert torch.allclose(rows[0], expected / expected.norm() * 2.0, atol=1e-6)
    assert usable.tolist() == [True, False, False]


def test_ctc_aligned_init_writes_only_the_codes_it_saw(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    trunk = ConfigTrunk(CONFIG, tokenizer="char")
    tok = trunk.load_tokenizer()
    ids = SpeechSpecialIds.from_tokenizer(tok, 40)
    model = LayerSplitSpeechLM.from_text_model(trunk.load(), 1, ids.speech_vocab_size, ids)
    (tmp_path / "cache" / "read").mkdir(parents=True)
    save_file({"u1": torch.tensor([3, 4], dtype=torch.int32)}, str(tmp_path / "cache" / "read" / "train.safetensors"))
    (tmp_path / "cache" / "read" / "train.index.json").write_text(
        '{"keys": ["u1"], "codebook_size": 40, "frame_rate": 12.5}'
    )
    monkeypatch.setattr("moss_components.tokenizers.load_speech_tokenizer", lambda path: ScriptedReader())
    before = model.speech_embed.weight.detach().clone()

    counts = CTCAlignedInit("tok", str(tmp_path / "cache")).apply(model, tok)

    assert counts == {"codes": 40, "aligned": 2, "left_random": 38}
    after = model.speech_embed.weight.detach()
    untouched = [i for i in range(ids.speech_vocab_size) if i not in (3, 4)]
    assert torch.equal(after[untouched], before[untouched])
    table = model.embed_tokens.weight.detach()
    char = lambda c: table[tok.encode(c, add_special_tokens=False)[0]]  # noqa: E731
    mix = 0.75 * char(CHARS[3]) + 0.25 * char(CHARS[4])  # code 3: sub-frame 0 all CHARS[3], sub-frame 2 half each
    assert torch.allclose(after[3], mix / mix.norm() * table.norm(dim=1).mean(), atol=1e-5)
    assert math.isclose(after[4].norm().item(), table.norm(dim=1).mean().item(), rel_tol=1e-5)


def test_a_tokenizer_without_a_ctc_head_is_refused():
    with pytest.raises(ValueError, match="Linear has no CTC head"):
        ctc_code_posteriors(torch.nn.Linear(1, 1), [torch.tensor([0])])

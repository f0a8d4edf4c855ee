import pytest

from moss_components import SpeechSpecialIds
from moss_components.text.char_tokenizer import build_char_tokenizer


def test_release_ids_match_the_published_checkpoint():
    ids = SpeechSpecialIds.moss_speech_release()
    assert (ids.text_start_of_speech, ids.text_modality_pad) == (151646, 151667)
    assert (ids.speech_end_of_speech, ids.speech_pad) == (16384, 512)


def test_from_tokenizer_uses_the_tokenizers_own_tokens():
    tok = build_char_tokenizer()
    ids = SpeechSpecialIds.from_tokenizer(tok, num_speech_codes=512)
    assert tok.convert_ids_to_tokens(ids.text_start_of_speech) == "<|speech_start|>"
    assert tok.convert_ids_to_tokens(ids.text_modality_pad) == "<|speech_pad|>"
    assert tok.eos_token_id in ids.text_eos and tok.convert_tokens_to_ids("<|im_end|>") in ids.text_eos
    assert (ids.speech_end_of_speech, ids.speech_pad, ids.speech_vocab_size) == (512, 513, 514)


def test_from_tokenizer_names_the_missing_token():
    with pytest.raises(ValueError, match="<|nope|>"):
        SpeechSpecialIds.from_tokenizer(build_char_tokenizer(), 16, start_of_speech_token="<|nope|>")


def test_end_of_speech_inside_the_codebook_is_rejected():
    with pytest.raises(ValueError, match="speech_end_of_speech=10 must be >= num_speech_codes=16"):
        SpeechSpecialIds(1, 2, (3,), speech_end_of_speech=10, speech_pad=11, num_speech_codes=16)

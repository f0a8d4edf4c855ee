from transformers import AutoTokenizer

from moss_components.text.char_tokenizer import build_char_tokenizer


def test_one_token_per_character_and_lossless_decode():
    tok = build_char_tokenizer()
    text = "what is the capital of france? paris."
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_unknown_characters_map_to_unk():
    tok = build_char_tokenizer()
    assert tok("é")["input_ids"] == [tok.unk_token_id]


def test_chat_template_and_save_load_round_trip(tmp_path):
    tok = build_char_tokenizer()
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    rendered = tok.apply_chat_template(chat, tokenize=False)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.apply_chat_template(chat, tokenize=False) == rendered
    assert again(rendered)["input_ids"] == tok(rendered)["input_ids"]

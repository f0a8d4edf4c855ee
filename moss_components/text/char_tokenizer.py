"""A character-level Hugging Face tokenizer for the embedded default text LLM.

Why characters: a word-level vocabulary makes each word one text token but 3-4 speech tokens, so text and speech
positions of the same sentence drift far apart; with characters (~16 per second of speech against 12.5 speech
tokens per second) the two streams stay comparable. It is a real ``PreTrainedTokenizerFast`` with a ChatML chat
template (the one SmolLM2 and Qwen use), so the pipeline treats it exactly like a pretrained LLM's tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|pad|>", "<|unk|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Text-side ids of the speech grid (SpeechSpecialIds.from_tokenizer looks them up by these strings).
START_OF_SPEECH_TOKEN = "<|speech_start|>"
MODALITY_PAD_TOKEN = "<|speech_pad|>"
ALPHABET = string.ascii_lowercase + string.digits + " .,?!'-:;\n" + string.ascii_uppercase

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_char_tokenizer(alphabet: str = ALPHABET) -> PreTrainedTokenizerFast:
    """Build the tokenizer: ids 0-4 are the special tokens, then one id per character of ``alphabet``, then the two
    speech tokens (start-of-speech, modality pad).

    Characters outside the alphabet map to ``<|unk|>``.
    """
    if len(set(alphabet)) != len(alphabet):
        raise ValueError("alphabet has repeated characters")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for tok in (START_OF_SPEECH_TOKEN, MODALITY_PAD_TOKEN):
        vocab[tok] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        eos_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>", START_OF_SPEECH_TOKEN, MODALITY_PAD_TOKEN],
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok

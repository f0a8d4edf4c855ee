"""A real tiny LayerSplitSpeechLM whose greedy next token is scripted by the last input token.

Pre-norm layers add O(1) updates to the residual stream, so with embeddings scaled up the final hidden state points
along the last token's embedding; head rows built from those directions then choose the next token by a table.
Everything else (cache, masks, both branches, padding) is the real model.
"""

from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import TINY_SPEECH_VOCAB, script_next_tokens, tiny_special_ids, tiny_text_model

IDS = tiny_special_ids()
EOS = IDS.text_eos[0]


def scripted_model(
    text_next: dict[int, int],
    speech_next: dict[int, int],
    text_after_speech: int = 20,
    speech_after_start: int = 2,
    router=None,
) -> LayerSplitSpeechLM:
    """``text_next[t]``: text token after text token t (``IDS.text_start_of_speech`` switches to speech);
    ``speech_next[c]``: speech token after code c (``IDS.speech_end_of_speech`` switches back);
    after end-of-speech the text token is ``text_after_speech``; after start-of-speech the code is
    ``speech_after_start``."""
    base = tiny_text_model("qwen3", num_layers=3, hidden_size=64, seed=7)
    model = LayerSplitSpeechLM.from_text_model(base, 1, TINY_SPEECH_VOCAB, IDS, router=router).eval()
    script_next_tokens(model, text_next, speech_next, text_after_speech, speech_after_start)
    return model


def chain_model(switch_at: int = 10, speech_len: int = 3, stop_at: int = 24, router=None) -> LayerSplitSpeechLM:
    """Text t -> t + 1; ``switch_at`` -> start-of-speech; codes 2, 3, ... ``speech_len`` of them, then
    end-of-speech; then text 20, 21, ... up to ``stop_at`` -> EOS."""
    text_next = {t: t + 1 for t in range(2, 97)}
    text_next[switch_at] = IDS.text_start_of_speech
    text_next[stop_at] = EOS
    speech_next = {c: c + 1 for c in range(0, 29)}
    speech_next[2 + speech_len - 1] = IDS.speech_end_of_speech
    return scripted_model(text_next, speech_next, router=router)

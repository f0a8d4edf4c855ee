"""Text-side helpers: the character-level tokenizer of the embedded default LLM and transcript normalization."""

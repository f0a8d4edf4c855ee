"""Both DataModules build from the class_path / init_args YAML that LightningCLI reads."""

import yaml
from jsonargparse import ArgumentParser

from lightning_modules.data import AudioTextDataModule, SpeechLMDataModule


def _build(cls, init_args: dict):
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    cfg = parser.parse_object({"data": init_args})
    return parser.instantiate_classes(cfg).data


def test_audio_text_from_yaml(micro_corpus):
    args = yaml.safe_load(f"{{manifest_dir: {micro_corpus}, batch_size: 2, crop_seconds: 1.0, num_workers: 0}}")
    dm = _build(AudioTextDataModule, args)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["wav"].shape == (2, 16000)


def test_speech_lm_from_yaml(micro_corpus, micro_cache):
    args = yaml.safe_load(
        f"""
        corpus_dir: {micro_corpus}
        speech_cache_dir: {micro_cache}
        tasks: {{sft: 1.0}}
        sft_modes: {{s2s: 1.0, t2t: 0.5}}
        special_ids: {{text_start_of_speech: 100, text_modality_pad: 101, text_eos: [2], speech_end_of_speech: 32,
                      speech_pad: 33, num_speech_codes: 32}}
        packing: true
        max_length: 256
        batch_size: 2
        samples_per_epoch: 2
        """
    )
    dm = _build(SpeechLMDataModule, args)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert dm.special_ids.text_start_of_speech == 100 and batch["input_ids"].shape == (2, 256, 2)

"""Acoustic features (log-mel) shared by tokenizers, decoders and vocoders."""

from moss_components.features.log_mel import LogMel

__all__ = ["LogMel"]

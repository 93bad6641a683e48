"""Tokenization service: audio files to discrete codes and back, at corpus scale.

- :mod:`sonotok.tokenizer.ops`: encode / decode of tensors and files with one codec (batch == single, streamed long files);
- :mod:`sonotok.tokenizer.inputs`: which files a run works on;
- :mod:`sonotok.tokenizer.formats`: the code-file formats (``.npy`` + sidecar JSON, safetensors shards);
- :mod:`sonotok.tokenizer.manifest`: the run manifest, resume and verification;
- :mod:`sonotok.tokenizer.runner`: the corpus drivers (``tokenize``, ``decode_files``);
- :mod:`sonotok.tokenizer.distributed`: the same over Lightning ``predict`` on several processes.
"""

from sonotok.tokenizer.inputs import INPUT_EXTENSIONS, Item, collect_code_files, collect_inputs
from sonotok.tokenizer.manifest import DECODE_MANIFEST_NAME, MANIFEST_NAME, Summary, format_summary
from sonotok.tokenizer.ops import (
    EncodedFile,
    decode_batch,
    decode_codes,
    encode_batch,
    encode_file,
    encode_file_info,
    encode_stream,
    frames_for_seconds,
    read_blocks,
)
from sonotok.tokenizer.runner import decode_files, tokenize

__all__ = [
    "INPUT_EXTENSIONS", "Item", "collect_inputs", "collect_code_files", "MANIFEST_NAME", "DECODE_MANIFEST_NAME",
    "Summary", "format_summary", "EncodedFile", "encode_batch", "encode_file", "encode_file_info", "encode_stream",
    "read_blocks", "decode_codes", "decode_batch", "frames_for_seconds", "tokenize", "decode_files",
]

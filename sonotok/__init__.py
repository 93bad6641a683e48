"""sonotok: neural audio codecs and tokenizers.

Train a codec from a Hydra config, tokenize audio to discrete codes, stream from an exported artifact.
"""

from sonotok.errors import AudioError, CodesError, ModelLoadError, SonotokError

__version__ = "0.1.0"


def load(path_or_name, map_location="cpu"):
    """Load a trained codec from a model directory (``config.yaml`` + ``model.safetensors``), a sonotok
    training checkpoint (``.ckpt``) or the name of a shipped model.

    Safe for files someone else made: weights are safetensors or read with ``weights_only=True``, and the
    config builds only allow-listed classes (``sonotok.model_io.check_targets``); anything else is a
    :class:`ModelLoadError` naming the key, before any of it runs.

    Args:
        path_or_name: a model directory, a ``.ckpt``, or the name of a model shipped in the package
            (``"default"``).
        map_location: the device the model is put on (for checkpoints too), in eval mode.
    """
    from sonotok.model_io import load_model

    return load_model(path_or_name, map_location=map_location)


def load_separator(path_or_name, map_location="cpu"):
    """Load a separation model (a model directory, checkpoint or shipped name); a codec is refused."""
    from sonotok.model_io import load_separator as _load

    return _load(path_or_name, map_location=map_location)


__all__ = ["load", "load_separator", "AudioError", "CodesError", "ModelLoadError", "SonotokError", "__version__"]

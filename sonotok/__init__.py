"""sonotok: neural audio codecs and tokenizers.

Train a codec from a Hydra config, tokenize audio to discrete codes, stream from an exported artifact.
"""

from sonotok.errors import AudioError, CodesError, ModelLoadError, SonotokError

__version__ = "0.1.0"


def load(path_or_name, map_location="cpu"):
    """Load a trained codec from a model directory (``config.yaml`` + ``model.safetensors``).

    Args:
        path_or_name: a model directory, or the name of a model shipped in the package (``"default"``).
        map_location: device to put the weights on.
    """
    from sonotok.model_io import load_model

    return load_model(path_or_name, map_location=map_location)


__all__ = ["load", "AudioError", "CodesError", "ModelLoadError", "SonotokError", "__version__"]

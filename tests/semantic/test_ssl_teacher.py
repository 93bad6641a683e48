import pytest
import torch

from sonotok.errors import ModelLoadError
from sonotok.semantic.ssl_teacher import SSLTeacher

TINY = dict(
    extractor_mode="group_norm", extractor_conv_layer_config=[(8, 10, 5), (8, 3, 2), (8, 2, 2), (8, 2, 2), (8, 2, 2),
                                                              (8, 2, 2), (8, 2, 2)],
    extractor_conv_bias=False, encoder_embed_dim=16, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=2, encoder_attention_dropout=0.0,
    encoder_ff_interm_features=32, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False,
    encoder_layer_drop=0.0, aux_num_out=None,
)


@pytest.fixture
def tiny_ckpt(tmp_path):
    import torchaudio.models as M

    p = tmp_path / "tiny_w2v.pth"
    torch.save(M.wav2vec2_model(**TINY).state_dict(), p)
    return p


def test_ssl_teacher_loads_local_checkpoint(tiny_ckpt):
    t = SSLTeacher(str(tiny_ckpt), arch="wav2vec2_model", arch_kwargs=TINY, layers=[0, 1])
    assert t.dim == 16 and not t.training
    assert all(not p.requires_grad for p in t.parameters())
    f = t(torch.randn(2, 1, 16000), num_frames=50)
    assert f.shape == (2, 16, 50)


def test_ssl_bad_paths(tmp_path, tiny_ckpt):
    with pytest.raises(ModelLoadError, match="no such SSL checkpoint"):
        SSLTeacher(str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a loadable"):
        SSLTeacher(str(junk))
    with pytest.raises(ModelLoadError, match="not a hubert_base checkpoint"):
        SSLTeacher(str(tiny_ckpt), arch="hubert_base")
    with pytest.raises(ValueError, match="unknown SSL architecture"):
        SSLTeacher(str(tiny_ckpt), arch="bert")

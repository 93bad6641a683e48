"""The `compile` config switch compiles encoder/decoder in place without changing the saved weights' keys."""

from sonotok.training.train import build_module, compose_config


def test_compile_switch_keeps_state_dict_keys():
    plain = build_module(compose_config(["experiment=tiny"])).codec
    compiled = build_module(compose_config(["experiment=tiny", "compile=true"])).codec
    assert compose_config([]).compile is False
    assert getattr(compiled.encoder, "_compiled_call_impl", None) is not None
    assert getattr(compiled.decoder, "_compiled_call_impl", None) is not None
    assert getattr(plain.encoder, "_compiled_call_impl", None) is None
    assert list(compiled.state_dict()) == list(plain.state_dict())

"""WER/CER with hallucination loops capped, loop detection, and the paired bootstrap of the semantic bench."""

import numpy as np
import pytest

from sonotok.semantic.wer import (
    char_errors,
    compression_ratio,
    is_loop,
    max_tokens_for,
    normalize_text,
    paired_bootstrap,
    score_utterances,
    word_errors,
)


def test_word_and_char_errors():
    assert word_errors("Please enter your password.", "please enter you password") == (1, 4)
    assert word_errors("All circuits are busy now.", "") == (5, 5)
    assert word_errors("followed by the pound-key", "followed by the pound key") == (0, 5)
    assert char_errors("the cat", "the bat") == (1, 7)
    assert char_errors("Hello, world!", "hello world") == (0, 11)


def test_loops_are_detected_and_capped():
    # hypotheses Whisper tiny.en produced on garbled reconstructions (bench/results/semantic_dmcodec_short.json)
    loops = ["Mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm-mm",
             "This is you, you, you, you, you, you, you",
             "Be sure to do that, do that, do that, do that.",
             "Nadi Nadi Nadi Nadi Nadi Nadi Nadi Nadi Nadi Nadi Nadi Nadi"]
    fine = ["The birch canoe slid on the smooth planks.", "Your call cannot be controlled as dialed.",
            "Logging in your eyes, please and you are beating the mother of the building.", "you"]
    assert all(is_loop(h) for h in loops), [h for h in loops if not is_loop(h)]
    assert not any(is_loop(h) for h in fine), [h for h in fine if is_loop(h)]
    assert compression_ratio(loops[0]) > 2.4 > compression_ratio(fine[0])
    refs = ["Glue the sheet to the dark blue background.", "The birch canoe slid on the smooth planks."]
    sc = score_utterances(refs, ["D-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d-d", refs[1]])
    assert sc["wer"] > 1.0  # 30 insertions against 8 words: the plain WER says little
    assert sc["wer_capped"] == pytest.approx(8 / 16)  # the loop counts as "all 8 words wrong", no more
    assert sc["loop_fraction"] == 0.5 and sc["utterances"] == 2 and sc["words"] == 16
    n0, n1 = (len(normalize_text(r)) for r in refs)
    assert sc["cer_capped"] == pytest.approx(n0 / (n0 + n1))  # capped at the reference's characters too
    assert [p["loop"] for p in sc["per_utterance"]] == [True, False]
    with pytest.raises(ValueError, match="references"):
        score_utterances(["a"], [])
    with pytest.raises(ValueError, match="no utterances"):
        score_utterances([], [])


def test_paired_bootstrap_and_token_cap():
    rng = np.random.default_rng(0)
    words = rng.integers(5, 12, size=60)
    a = np.minimum(words, rng.binomial(words, 0.2))
    b = np.minimum(words, rng.binomial(words, 0.6))
    better = paired_bootstrap(a, b, words)
    assert better["hi"] < 0 and better["p_a_better"] > 0.99 and better["lo"] < better["diff"] < better["hi"]
    same = paired_bootstrap(a, a + rng.integers(-1, 2, size=60).clip(min=-a), words)
    assert same["lo"] < 0 < same["hi"] or abs(same["diff"]) < 0.02
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1, 2], [1], [3, 3])
    assert max_tokens_for(2.0) == 26 and max_tokens_for(100.0) == 448

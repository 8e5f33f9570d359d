"""The beam-search bookkeeping and logits processors of open_clip's ``generate``, written on torch alone:
by hand on small inputs, and equal to the transformers classes open_clip uses where those are installed."""
from __future__ import annotations

import math

import pytest
import torch

from extract_helpers import transformers_generation
from t3al.extract.beam_search import BeamSearch, forbid_end_before, keep_top_k, keep_top_p, penalize_repetition

INF = math.inf


def test_the_end_token_is_forbidden_below_the_minimum_length_only():
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    assert forbid_end_before(scores, 2, 3, eos=1).tolist() == [[1.0, -INF, 3.0]]
    assert forbid_end_before(scores, 3, 3, eos=1).tolist() == [[1.0, 2.0, 3.0]]


def test_repeated_tokens_are_penalized_towards_less_likely():
    scores = torch.tensor([[2.0, -1.0, 4.0, -3.0]])
    seen = torch.tensor([[0, 1, 1]])
    assert penalize_repetition(scores, seen, 2.0).tolist() == [[1.0, -2.0, 4.0, -3.0]]
    assert penalize_repetition(scores, seen, 1.0) is scores
    with pytest.raises(ValueError, match="positive"):
        penalize_repetition(scores, seen, 0.0)


def test_top_k_keeps_the_k_highest_and_their_ties():
    scores = torch.tensor([[1.0, 5.0, 3.0, 3.0, 0.0]])
    assert keep_top_k(scores, 1).tolist() == [[-INF, 5.0, -INF, -INF, -INF]]
    assert keep_top_k(scores, 2).tolist() == [[-INF, 5.0, 3.0, 3.0, -INF]]
    assert keep_top_k(scores, 50).tolist() == scores.tolist()


def test_top_p_keeps_the_likeliest_tokens_until_their_mass_exceeds_p():
    scores = torch.tensor([[0.5, 0.3, 0.2]]).log()
    assert keep_top_p(scores, 0.6).isfinite().tolist() == [[True, True, False]]
    assert keep_top_p(scores, 0.4).isfinite().tolist() == [[True, False, False]]
    assert keep_top_p(scores, 0.0).isfinite().tolist() == [[True, False, False]]  # at least one token
    assert keep_top_p(scores, 1.0).isfinite().tolist() == [[True, True, True]]


def candidates(scores, tokens, origins):
    return torch.tensor([scores]), torch.tensor([tokens]), torch.tensor([origins])


def test_an_early_end_that_no_live_beam_can_beat_finishes_the_search():
    search = BeamSearch(1, 2, max_length=5, eos=9, pad=0, device="cpu")
    ids = torch.tensor([[1], [1]])
    # rank 0 ends ([1], score -1 / 2); ranks 1 and 2 continue; rank 3's end is outside the 2 best and dropped
    scores, tokens, rows = search.step(ids, *candidates([-1.0, -2.0, -3.0, -4.0], [9, 4, 5, 9], [0, 0, 1, 1]))
    assert (scores.tolist(), tokens.tolist(), rows.tolist()) == ([-2.0, -3.0], [4, 5], [0, 1])
    assert not search.is_done
    ids = torch.cat([ids[rows], tokens[:, None]], dim=1)
    # [1, 5] ends at -2.5 / 3; the best live score -2.5 / 3 cannot beat the worst of the 2 hypotheses
    scores, tokens, rows = search.step(ids, *candidates([-2.5, -2.6, -3.5, -9.0], [9, 7, 8, 9], [1, 0, 0, 0]))
    assert (tokens.tolist(), rows.tolist()) == ([7, 8], [0, 0])
    assert search.is_done
    ids = torch.cat([ids[rows], tokens[:, None]], dim=1)
    assert search.finalize(ids, scores).tolist() == [[1, 9]]  # [1] scores -0.5: the best, then its end token


def test_live_beams_at_the_length_limit_compete_with_the_ended_ones():
    search = BeamSearch(1, 2, max_length=3, eos=9, pad=0, device="cpu")
    ids = torch.tensor([[1], [1]])
    _, tokens, rows = search.step(ids, *candidates([-1.0, -2.0, -3.0, -4.0], [9, 4, 5, 9], [0, 0, 1, 1]))
    ids = torch.cat([ids[rows], tokens[:, None]], dim=1)
    scores, tokens, rows = search.step(ids, *candidates([-0.2, -0.3, -5.0, -6.0], [6, 7, 9, 9], [0, 1, 0, 1]))
    ids = torch.cat([ids[rows], tokens[:, None]], dim=1)
    assert ids.tolist() == [[1, 4, 6], [1, 5, 7]] and not search.is_done
    # [1, 4, 6] scores -0.2 / 3, above [1] at -0.5; at the length limit no end token is added
    assert search.finalize(ids, scores).tolist() == [[1, 4, 6]]


def test_a_done_image_pads_its_own_rows_while_the_others_go_on():
    search = BeamSearch(2, 1, max_length=4, eos=9, pad=0, device="cpu")
    ids = torch.tensor([[1], [1]])
    scores = torch.tensor([[-1.0, -2.0], [-1.0, -2.0]])
    nxt, tokens, rows = search.step(ids, scores, torch.tensor([[9, 3], [4, 9]]), torch.zeros(2, 2, dtype=torch.long))
    assert tokens.tolist() == [3, 4] and search.done.tolist() == [True, False]
    ids = torch.cat([ids[rows], tokens[:, None]], dim=1)
    nxt, tokens, rows = search.step(ids, scores, torch.tensor([[5, 6], [5, 6]]), torch.tensor([[0, 0], [0, 0]]))
    assert (tokens.tolist(), rows.tolist(), nxt.tolist()) == ([0, 5], [0, 1], [0.0, -1.0])


def random_search(generation, seed: int, beams: int, length_penalty: float, early_stopping) -> None:
    """Drive our search and transformers' scorer with the same random scores; same choices, same result."""
    batch, vocab, eos, pad, max_length = 3, 6, 5, 0, 7
    gen = torch.Generator().manual_seed(seed)
    ours = BeamSearch(batch, beams, max_length, eos, pad, "cpu", length_penalty, early_stopping)
    theirs = generation.BeamSearchScorer(batch_size=batch, num_beams=beams, device="cpu", length_penalty=length_penalty,
                                         do_early_stopping=early_stopping, max_length=max_length)
    start = torch.full((batch, beams), -1e9)
    start[:, 0] = 0
    ids = {"ours": torch.ones(batch * beams, 1, dtype=torch.long), "theirs": torch.ones(batch * beams, 1, dtype=torch.long)}
    sums = {"ours": start.view(-1), "theirs": start.view(-1).clone()}
    while True:
        logits = torch.randn(batch * beams, vocab, generator=gen).log_softmax(-1)
        live = ~ours.done.repeat_interleave(beams)
        chosen = {}
        for who in ("ours", "theirs"):
            top, flat = torch.topk((logits + sums[who][:, None]).view(batch, beams * vocab), 2 * beams, dim=1)
            tokens, origins = flat % vocab, flat // vocab
            if who == "ours":
                nxt, nxt_tokens, rows = ours.step(ids[who], top, tokens, origins)
            else:
                out = theirs.process(ids[who], top, tokens, origins, pad_token_id=pad, eos_token_id=eos)
                nxt, nxt_tokens, rows = out["next_beam_scores"], out["next_beam_tokens"], out["next_beam_indices"]
            chosen[who] = (nxt[live], nxt_tokens[live], rows[live])
            sums[who] = nxt
            ids[who] = torch.cat([ids[who][rows], nxt_tokens[:, None]], dim=1)
        for a, b in zip(chosen["ours"], chosen["theirs"]):
            assert torch.equal(a, b)
        assert bool(ours.is_done) == bool(theirs.is_done)
        if ids["ours"].shape[1] >= max_length or bool(ours.is_done):
            break
    expected = theirs.finalize(ids["theirs"], sums["theirs"], None, None, max_length=max_length, pad_token_id=pad,
                               eos_token_id=eos)["sequences"]
    assert torch.equal(ours.finalize(ids["ours"], sums["ours"]), expected)


@pytest.mark.parametrize("early_stopping", [False, True, "never"])
@pytest.mark.parametrize("length_penalty", [1.0, 0.5, 2.0, -1.0])
def test_beam_search_chooses_and_finishes_as_transformers_beam_search_scorer(length_penalty, early_stopping):
    generation = transformers_generation()
    for seed in range(6):
        random_search(generation, seed, beams=2 + seed % 2, length_penalty=length_penalty,
                      early_stopping=early_stopping)


def test_processors_equal_the_transformers_ones_open_clip_uses():
    generation = transformers_generation()
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 10, generator=gen)
    ids = torch.randint(0, 10, (4, 3), generator=gen)
    for length in (2, 3):
        assert torch.equal(forbid_end_before(scores, length, 3, 7),
                           generation.MinLengthLogitsProcessor(3, torch.tensor([7]))(ids[:, :length], scores))
    for penalty in (1.0, 1.3, 0.7):
        assert torch.equal(penalize_repetition(scores, ids, penalty),
                           generation.RepetitionPenaltyLogitsProcessor(penalty)(ids, scores))
    for k in (1, 3, 20):
        assert torch.equal(keep_top_k(scores, k), generation.TopKLogitsWarper(k)(ids, scores))
    for p in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert torch.equal(keep_top_p(scores, p), generation.TopPLogitsWarper(p)(ids, scores))

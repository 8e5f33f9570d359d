"""Beam-search bookkeeping and logits processors of open_clip's ``CoCa.generate``, on torch alone.

open_clip's ``generate`` takes these from transformers (``BeamSearchScorer``, the minimum-length and
repetition-penalty processors, the top-k and top-p warpers). They are written here with the same
results, so that captions need no transformers, and kept on the tensors' device: the scorer is
vectorised over the images of a batch and reads nothing back to the host during a step.
"""
from __future__ import annotations

import torch

EARLY_STOPPING = (True, False, "never")


def forbid_end_before(scores: torch.Tensor, length: int, min_length: int, eos: int) -> torch.Tensor:
    """The end token cannot be chosen while the sequences are shorter than ``min_length`` tokens."""
    if length >= min_length:
        return scores
    scores = scores.clone()
    scores[:, eos] = -torch.inf
    return scores


def penalize_repetition(scores: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Scores of tokens already in a row: negative ones times ``penalty``, others divided by it."""
    if penalty <= 0:
        raise ValueError(f"the repetition penalty must be positive, got {penalty}")
    if penalty == 1.0:
        return scores
    seen = torch.gather(scores, 1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, input_ids, seen)


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Scores outside the ``k`` highest of each row (ties with the k-th kept) become -inf."""
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    kth = torch.topk(scores, min(k, scores.shape[-1]))[0][..., -1:]
    return scores.masked_fill(scores < kth, -torch.inf)


def keep_top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most likely tokens whose probabilities add up to more than ``p`` (at least one); -inf the rest."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1], got {p}")
    ascending, order = torch.sort(scores, descending=False)
    drop = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - p
    drop[..., -1] = False
    return scores.masked_fill(drop.scatter(1, order, drop), -torch.inf)


class BeamSearch:
    """Finished hypotheses of a beam search over a batch of images, ``beams`` live sequences each.

    The semantics are those of transformers' ``BeamSearchScorer`` for one beam group: an end token
    among the ``beams`` best candidates finishes a hypothesis scored ``sum / length ** length_penalty``;
    each image keeps its ``beams`` best hypotheses (a new one enters only above the worst; the worst
    leaves, the oldest first among equals) and is done once it holds ``beams`` hypotheses that no
    live sequence can beat (``early_stopping``: True stops at ``beams`` hypotheses, False bounds the
    live score at the current length, ``"never"`` at ``max_length`` when the penalty is positive).
    Hypothesis scores are float64, as the Python floats transformers compares them as.
    """

    def __init__(self, batch: int, beams: int, max_length: int, eos: int, pad: int, device: torch.device,
                 length_penalty: float = 1.0, early_stopping: bool | str = False) -> None:
        if beams < 1:
            raise ValueError(f"a beam search needs at least one beam, got {beams}")
        if early_stopping not in EARLY_STOPPING:
            raise ValueError(f"early_stopping must be one of {EARLY_STOPPING}, got {early_stopping!r}")
        self.batch, self.beams, self.max_length = batch, beams, max_length
        self.eos, self.pad = eos, pad
        self.length_penalty, self.early_stopping = length_penalty, early_stopping
        self.device = torch.device(device)
        self.tokens = torch.full((batch, beams, max_length), pad, dtype=torch.long, device=self.device)
        self.lengths = torch.zeros(batch, beams, dtype=torch.long, device=self.device)
        self.scores = torch.full((batch, beams), -torch.inf, dtype=torch.float64, device=self.device)
        self.stamps = torch.zeros(batch, beams, dtype=torch.long, device=self.device)
        self.count = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        self.clock = 0
        self.own_rows = torch.arange(batch * beams, device=self.device)

    @property
    def is_done(self) -> torch.Tensor:
        """Whether every image is done (a device tensor: reading it is the step's one host sync)."""
        return self.done.all()

    def step(self, input_ids: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor,
             origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Take the ``2 * beams`` ranked candidates of each image; the next beams' scores, tokens and rows.

        ``input_ids`` (batch * beams, length) are the live sequences; ``scores``, ``tokens`` and
        ``origins`` (batch, 2 * beams) the candidates in descending score order, ``origins`` being the
        beam (0 .. beams - 1) each extends. Rows of done images continue themselves with padding.
        """
        beams, length = self.beams, input_ids.shape[-1]
        was_done = self.done.clone()
        rows = origins + self.beams * torch.arange(self.batch, device=self.device)[:, None]
        is_end = tokens == self.eos
        for rank in range(beams):
            self._offer(is_end[:, rank] & ~was_done, input_ids[rows[:, rank]], scores[:, rank], length + 1)
        live = ~is_end & (torch.cumsum(~is_end, dim=1) <= beams)
        ranks = torch.arange(2 * beams, device=self.device)
        chosen = torch.sort(torch.where(live, ranks, ranks + 2 * beams), dim=1).indices[:, :beams]
        next_scores = torch.where(was_done[:, None], 0.0, scores.gather(1, chosen)).reshape(-1)
        next_tokens = torch.where(was_done[:, None], self.pad, tokens.gather(1, chosen)).reshape(-1)
        next_rows = torch.where(was_done.repeat_interleave(beams), self.own_rows, rows.gather(1, chosen).reshape(-1))
        self.done = was_done | self._cannot_improve(scores.max(dim=1).values, length + 1)
        return next_scores, next_tokens, next_rows

    def finalize(self, input_ids: torch.Tensor, beam_scores: torch.Tensor) -> torch.Tensor:
        """The best hypothesis of each image, the live sequences counted; ended by the end token where it fits.

        Rows are padded to the longest (one host read, at the end); the latest of equal best scores wins.
        """
        length = input_ids.shape[-1]
        lives = input_ids.reshape(self.batch, self.beams, length)
        live_scores = beam_scores.reshape(self.batch, self.beams)
        for beam in range(self.beams):
            self._offer(~self.done, lives[:, beam], live_scores[:, beam], length)
        best_score = self.scores.max(dim=1, keepdim=True).values
        best = torch.where(self.scores == best_score, self.stamps, -1).argmax(dim=1)
        images = torch.arange(self.batch, device=self.device)
        lengths, tokens = self.lengths[images, best], self.tokens[images, best]
        width = min(int(lengths.max()) + 1, self.max_length)
        positions = torch.arange(width, device=self.device)
        ended = torch.where(positions == lengths[:, None], self.eos, self.pad)
        return torch.where(positions < lengths[:, None], tokens[:, :width], ended)

    def _offer(self, offered: torch.Tensor, tokens: torch.Tensor, sums: torch.Tensor, length: int) -> None:
        """Offer one hypothesis per image (where ``offered``): ``tokens`` (batch, n) scored from ``sums``."""
        score = sums.to(torch.float64) / (length ** self.length_penalty)
        full = self.count >= self.beams
        worst = self.scores.min(dim=1).values
        accepted = offered & (~full | (score > worst))
        oldest_worst = torch.where(self.scores == worst[:, None], self.stamps, torch.iinfo(torch.long).max).argmin(dim=1)
        slot = torch.where(full, oldest_worst, self.count.clamp(max=self.beams - 1))
        into = (torch.arange(self.beams, device=self.device) == slot[:, None]) & accepted[:, None]
        width = tokens.shape[-1]
        self.tokens[:, :, :width] = torch.where(into[..., None], tokens[:, None, :], self.tokens[:, :, :width])
        self.lengths = torch.where(into, width, self.lengths)
        self.scores = torch.where(into, score[:, None], self.scores)
        self.stamps = torch.where(into, self.clock, self.stamps)
        self.count = self.count + accepted
        self.clock += 1

    def _cannot_improve(self, best_sums: torch.Tensor, length: int) -> torch.Tensor:
        """Images holding ``beams`` hypotheses that no live sequence, scoring ``best_sums`` now, can beat."""
        full = self.count >= self.beams
        if self.early_stopping is True:
            return full
        bound_length = length
        if self.early_stopping == "never" and self.length_penalty > 0:
            bound_length = self.max_length
        best = best_sums.to(torch.float64) / (bound_length ** self.length_penalty)
        return full & (self.scores.min(dim=1).values >= best)

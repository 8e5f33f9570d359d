"""CoCa captions with the tokens of open_clip's ``CoCa.generate``, without its repeated work.

open_clip's ``generate`` encodes every image once per beam, reruns both text towers over the whole
prefix at every step and computes vocabulary logits for every position. ``CaptionGenerator`` takes
the image tokens of the feature pass, keeps per-layer self-attention keys/values (one new token per
step), computes the cross-attention keys/values of the image tokens once per image (the beams of an
image are that image's queries), computes logits for the last position only, and runs all beams of
all images of a batch in one decoder call per step. It runs on open_clip's own modules and weights;
only the attention of a single new token is written here, on the ``nn.MultiheadAttention``
parameters. The beam bookkeeping and logits processors are ``beam_search``'s, torch-only equivalents of
the transformers classes open_clip uses, run once for open_clip's identical beam groups
(``CaptionGenerator._beam_search`` says why that gives the same tokens).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from importlib.metadata import version

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from t3al.cache import T3alError

from .beam_search import BeamSearch, forbid_end_before, keep_top_k, keep_top_p, penalize_repetition

SOT, EOT = 49406, 49407
DECODINGS = ("beam", "greedy", "top_k", "top_p")
HALF = (torch.float16, torch.bfloat16)
GENERATOR = "t3al incremental CoCa decoder (tokens of open_clip CoCa.generate)"


class CaptionError(T3alError, ValueError):
    """A model or setting the generator cannot caption with; the message says which."""


@dataclass(frozen=True)
class CaptionSettings:
    """How captions are decoded; the defaults are open_clip's ``generate`` defaults.

    ``beam``: open_clip's default beam search (6 beams in 3 groups, minimum 5 tokens).
    ``greedy``: open_clip's ``top_k`` path with ``top_k=1``, the most likely token at every step.
    ``top_k`` / ``top_p``: open_clip's sampling paths (same tokens for the same torch seed).
    """

    decoding: str = "beam"
    seq_len: int = 30
    num_beams: int = 6
    num_beam_groups: int = 3
    min_seq_len: int = 5
    repetition_penalty: float = 1.0
    top_k: int = 1
    top_p: float = 0.1
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.decoding not in DECODINGS:
            raise CaptionError(f"caption decoding must be one of {', '.join(DECODINGS)}, got {self.decoding!r}")
        if self.seq_len <= self.min_seq_len:
            raise CaptionError(f"caption length {self.seq_len} must be larger than the minimum "
                               f"length {self.min_seq_len}")
        if self.num_beam_groups < 1 or self.num_beams < 2 or self.num_beams % self.num_beam_groups:
            raise CaptionError(f"{self.num_beams} beams cannot form {self.num_beam_groups} equal groups "
                               "(at least 2 beams, a multiple of the groups)")
        if self.top_k < 1 or not 0.0 <= self.top_p <= 1.0 or self.temperature <= 0 or self.repetition_penalty <= 0:
            raise CaptionError(f"caption sampling needs top_k >= 1 (got {self.top_k}), top_p in [0, 1] (got "
                               f"{self.top_p}), and a positive temperature (got {self.temperature}) and "
                               f"repetition penalty (got {self.repetition_penalty})")

    def generate_kwargs(self) -> dict:
        """The arguments of open_clip's ``CoCa.generate`` that decode the same way."""
        kind = {"beam": "beam_search", "greedy": "top_k"}.get(self.decoding, self.decoding)
        kwargs = {"seq_len": self.seq_len, "generation_type": kind, "min_seq_len": self.min_seq_len,
                  "repetition_penalty": self.repetition_penalty}
        if kind == "beam_search":
            return {**kwargs, "num_beams": self.num_beams, "num_beam_groups": self.num_beam_groups}
        top_k = 1 if self.decoding == "greedy" else self.top_k
        return {**kwargs, "top_k": top_k, "top_p": self.top_p, "temperature": self.temperature}

    def describe(self) -> dict:
        """What ``cache.json`` records about the captions' decoding."""
        return {"generator": GENERATOR, "decoding": self.decoding, **self.generate_kwargs()}


def _require(owner: nn.Module, names: tuple[str, ...], where: str) -> None:
    """The open_clip attributes the generator reads must exist: one line naming the open_clip version if not."""
    missing = [name for name in names if getattr(owner, name, None) is None]
    if missing:
        raise CaptionError(f"{where} ({type(owner).__name__}) has no {', '.join(missing)} in open_clip "
                           f"{version('open_clip_torch')}; captions need a CoCa as built by the open_clip_torch "
                           "versions in t3al's setup.cfg")


def _check_block(block: nn.Module, where: str, cross: bool = False) -> None:
    """A block must be open_clip's residual attention block over a packed ``nn.MultiheadAttention``."""
    _require(block, ("attn", "ln_1", "ln_2", "ls_1", "ls_2", "mlp") + (("ln_1_kv",) if cross else ()), where)
    if not isinstance(block.attn, nn.MultiheadAttention) or block.attn.in_proj_weight is None:
        raise CaptionError(f"{where}: the attention is not an nn.MultiheadAttention with a packed input "
                           "projection; captions need a CoCa with standard blocks")


class SelfAttentionCache:
    """Keys and values of one self-attention layer for every row, growing one position per step."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def append(self, keys: torch.Tensor, values: torch.Tensor, position: int, capacity: int) -> None:
        if self.keys is None:
            rows, heads, _, dim = keys.shape
            self.keys = keys.new_empty(rows, heads, capacity, dim)
            self.values = values.new_empty(rows, heads, capacity, dim)
        self.keys[:, :, position] = keys[:, :, 0]
        self.values[:, :, position] = values[:, :, 0]

    def reorder(self, rows: torch.Tensor, length: int) -> None:
        if self.keys is not None:
            self.keys[:, :, :length] = self.keys[rows, :, :length]
            self.values[:, :, :length] = self.values[rows, :, :length]


class DecoderState:
    """Everything one batch of captions carries between steps: caches, key masks and position."""

    def __init__(self, decoder: "CocaDecoder", image_tokens: torch.Tensor, rows_per_image: int, capacity: int) -> None:
        self.rows_per_image = rows_per_image
        self.capacity = capacity
        self.position = 0
        self.text_caches = [SelfAttentionCache() for _ in decoder.text_blocks]
        self.decoder_caches = [SelfAttentionCache() for _ in decoder.decoder_blocks]
        self.cross = [decoder.cross_keys_values(block, image_tokens) for block in decoder.cross_blocks]
        rows = image_tokens.shape[0] * rows_per_image
        self.key_valid = torch.ones(rows, capacity, dtype=torch.bool, device=image_tokens.device)
        self.last_token = torch.full((rows,), SOT, dtype=torch.long, device=image_tokens.device)

    def reorder(self, rows: torch.Tensor) -> None:
        """Row ``i`` continues the prefix of row ``rows[i]`` (beam search's selection)."""
        length = self.position
        for cache in self.text_caches + self.decoder_caches:
            cache.reorder(rows, length)
        self.key_valid[:, :length] = self.key_valid[rows, :length]
        self.last_token = self.last_token[rows]


class CocaDecoder:
    """Incremental form of a CoCa's text tower and multimodal decoder, on the model's own modules."""

    def __init__(self, model: nn.Module) -> None:
        _require(model, ("text", "text_decoder", "pad_id"), "the model")
        text, decoder = model.text, model.text_decoder
        _require(text, ("token_embedding", "positional_embedding", "transformer", "pad_id", "num_pos", "cls_emb",
                        "attn_mask"), "the causal text tower with a class token")
        _require(decoder, ("resblocks", "cross_attn", "context_length", "ln_final", "text_projection"),
                 "the multimodal decoder")
        for i, block in enumerate(text.transformer.resblocks):
            _check_block(block, f"text layer {i}")
        for i, (block, cross) in enumerate(zip(decoder.resblocks, decoder.cross_attn)):
            _check_block(block, f"decoder layer {i}")
            _check_block(cross, f"decoder cross-attention {i}", cross=True)
        self.model = model
        self.text, self.decoder = text, decoder
        self.text_blocks = list(text.transformer.resblocks)
        self.decoder_blocks = list(decoder.resblocks)
        self.cross_blocks = list(decoder.cross_attn)
        self.pad_id = int(text.pad_id)
        self.correct_cls_mask = bool(getattr(text, "correct_cls_mask", False))
        self.max_len = min(text.num_pos - 1, decoder.context_length)

    def check_length(self, length: int) -> None:
        """Captions of ``length`` tokens must fit the text towers' positions."""
        if length > self.max_len:
            raise CaptionError(f"caption length {length} exceeds the model's text context of {self.max_len} tokens")

    def start(self, image_tokens: torch.Tensor, rows_per_image: int, length: int) -> DecoderState:
        """State for ``rows_per_image`` sequences per image, each at most ``length`` tokens."""
        self.check_length(length)
        return DecoderState(self, image_tokens, rows_per_image, length)

    @staticmethod
    def cross_keys_values(block: nn.Module, image_tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Cross-attention keys and values of the image tokens, once per image: (B, heads, N, head dim)."""
        attn = block.attn
        width = attn.embed_dim
        kv = block.ln_1_kv(image_tokens)
        bias = attn.in_proj_bias
        keys = F.linear(kv, attn.in_proj_weight[width:2 * width], None if bias is None else bias[width:2 * width])
        values = F.linear(kv, attn.in_proj_weight[2 * width:], None if bias is None else bias[2 * width:])
        return _heads(keys, attn.num_heads), _heads(values, attn.num_heads)

    def step(self, state: DecoderState, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (one per row) at the next position; vocabulary logits of that position."""
        position = state.position
        if position >= state.capacity:
            raise CaptionError(f"decoding past the {state.capacity} tokens this state was made for")
        if position > 0 and not self.correct_cls_mask:
            # open_clip's legacy CoCa mask shifts the pad mask one key to the right (cls key first)
            state.key_valid[:, position] = state.last_token != self.pad_id
        elif self.correct_cls_mask:
            state.key_valid[:, position] = tokens != self.pad_id
        state.last_token = tokens
        cast = self.text.transformer.get_cast_dtype()
        x = self.text.token_embedding(tokens).to(cast) + self.text.positional_embedding[position].to(cast)
        mask = state.key_valid[:, None, None, :position + 1]  # always passed: testing for padding would sync
        for block, cache in zip(self.text_blocks, state.text_caches):
            x = self._self_block(block, cache, x, position, state.capacity, mask)
        for block, cache, cross, keys_values in zip(self.decoder_blocks, state.decoder_caches,
                                                   self.cross_blocks, state.cross):
            x = self._self_block(block, cache, x, position, state.capacity, None)
            x = self._cross_block(cross, keys_values, x, state.rows_per_image)
        state.position = position + 1
        return self.decoder.ln_final(x) @ self.decoder.text_projection

    @staticmethod
    def _self_block(block: nn.Module, cache: SelfAttentionCache, x: torch.Tensor, position: int,
                    capacity: int, mask: torch.Tensor | None) -> torch.Tensor:
        """One residual block for one new token per row, attending to the cached prefix."""
        attn = block.attn
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        query, key, value = (_heads(part[:, None], attn.num_heads) for part in qkv.chunk(3, dim=-1))
        cache.append(key, value, position, capacity)
        out = F.scaled_dot_product_attention(query, cache.keys[:, :, :position + 1],
                                             cache.values[:, :, :position + 1], attn_mask=mask)
        x = x + block.ls_1(F.linear(_merge(out)[:, 0], attn.out_proj.weight, attn.out_proj.bias))
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    @staticmethod
    def _cross_block(block: nn.Module, keys_values: tuple[torch.Tensor, ...], x: torch.Tensor,
                     rows_per_image: int) -> torch.Tensor:
        """Cross-attention to the image tokens: the rows of one image are that image's queries."""
        attn = block.attn
        width = attn.embed_dim
        bias = attn.in_proj_bias
        query = F.linear(block.ln_1(x), attn.in_proj_weight[:width], None if bias is None else bias[:width])
        query = _heads(query.reshape(-1, rows_per_image, width), attn.num_heads)
        out = F.scaled_dot_product_attention(query, *keys_values)
        out = F.linear(_merge(out).reshape(-1, width), attn.out_proj.weight, attn.out_proj.bias)
        x = x + block.ls_1(out)
        return x + block.ls_2(block.mlp(block.ln_2(x)))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, heads, L, D / heads)."""
    batch, length, width = x.shape
    return x.reshape(batch, length, heads, width // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, d) -> (B, L, heads * d)."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


class CaptionGenerator:
    """Caption tokens and texts from image tokens, as open_clip's ``generate`` would give them."""

    def __init__(self, model: nn.Module, settings: CaptionSettings = CaptionSettings()) -> None:
        self.decoder = CocaDecoder(model)
        self.settings = settings
        self.pad_id = int(model.pad_id)
        self.decoder.check_length(settings.seq_len)

    def texts(self, image_tokens: torch.Tensor) -> list[str]:
        """Cleaned captions of a batch of image tokens (the vision tower's token output)."""
        return [clean_caption(open_clip.decode(row)) for row in self.tokens(image_tokens).cpu()]

    @torch.no_grad()
    def tokens(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """Token rows as ``CoCa.generate`` returns them for the images these tokens came from.

        Half-precision image tokens are decoded under autocast of their dtype (the caller's autocast,
        when one is on, is kept), so an fp32 model reads fp16 or bf16 tokens without a dtype error.
        """
        with self._autocast(image_tokens):
            if self.settings.decoding == "beam":
                return self._beam_search(image_tokens)
            return self._sample(image_tokens)

    @staticmethod
    def _autocast(image_tokens: torch.Tensor) -> contextlib.AbstractContextManager:
        device = image_tokens.device.type
        if image_tokens.dtype in HALF and not torch.is_autocast_enabled(device):
            return torch.autocast(device, dtype=image_tokens.dtype)
        return contextlib.nullcontext()

    def _process(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """open_clip's logits processors, in its order: the minimum length, then the repetition penalty."""
        s = self.settings
        scores = forbid_end_before(logits, input_ids.shape[-1], s.min_seq_len, EOT)
        return penalize_repetition(scores, input_ids, s.repetition_penalty)

    def _sample(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's ``top_k`` / ``top_p`` loop: sample the active rows, pad the finished ones.

        Only the active rows draw random numbers, as in open_clip, so a seed gives its tokens; finding
        them is the step's one host sync.
        """
        s = self.settings
        device = image_tokens.device
        kind = s.generate_kwargs()
        state = self.decoder.start(image_tokens, 1, s.seq_len)
        out = torch.full((image_tokens.shape[0], 1), SOT, dtype=torch.long, device=device)
        while True:
            last = out[:, -1]
            active = ((last != EOT) & (last != self.pad_id)).nonzero()[:, 0]
            if len(active) == 0:
                break
            logits = self.decoder.step(state, last)
            scores = self._process(out[active], logits[active])
            if kind["generation_type"] == "top_k":
                scores = keep_top_k(scores, kind["top_k"])
            else:
                scores = keep_top_p(scores, s.top_p)
            sample = torch.full((out.shape[0],), self.pad_id, dtype=torch.long, device=device)
            if out.shape[1] + 1 == s.seq_len:
                sample[active] = EOT
            else:
                sample[active] = torch.multinomial(F.softmax(scores / s.temperature, dim=-1), 1)[:, 0]
            out = torch.cat((out, sample[:, None]), dim=-1)
            if out.shape[1] >= s.seq_len:
                break
        return out

    def _beam_search(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's grouped beam search, one decoder step for all beams of all images.

        open_clip's groups share no diversity penalty (its logits processors are the minimum length
        and the repetition penalty, both per row) and start alike, so each group is the same
        ``num_beams / num_beam_groups``-beam search and the best hypothesis over the groups is that
        search's best: one group is run, with the same bookkeeping and candidate ranking. The
        bookkeeping stays on the device; whether every image is done is the step's one host sync.
        """
        s = self.settings
        device = image_tokens.device
        batch, beams = image_tokens.shape[0], s.num_beams // s.num_beam_groups
        search = BeamSearch(batch, beams, s.seq_len, EOT, self.pad_id, device)
        state = self.decoder.start(image_tokens, beams, s.seq_len)
        input_ids = torch.full((batch * beams, 1), SOT, dtype=torch.long, device=device)
        beam_scores = torch.full((batch, beams), -1e9, dtype=torch.float, device=device)
        beam_scores[:, 0] = 0
        beam_scores = beam_scores.view(-1)
        while True:
            logits = self.decoder.step(state, input_ids[:, -1])
            scores = self._process(input_ids, logits) + beam_scores[:, None]
            vocab = scores.shape[-1]
            scores, candidates = torch.topk(scores.view(batch, beams * vocab), 2 * beams, dim=1, sorted=True)
            beam_scores, next_tokens, rows = search.step(input_ids, scores, candidates % vocab,
                                                         torch.div(candidates, vocab, rounding_mode="floor"))
            input_ids = torch.cat([input_ids[rows], next_tokens[:, None]], dim=-1)
            state.reorder(rows)
            if input_ids.shape[-1] >= s.seq_len or bool(search.is_done):
                break
        return search.finalize(input_ids, beam_scores)


def open_clip_tokens(model: nn.Module, images: torch.Tensor, settings: CaptionSettings) -> torch.Tensor:
    """open_clip's own ``CoCa.generate`` with these settings: the reference the generator must equal."""
    with torch.no_grad():
        return model.generate(images, **settings.generate_kwargs())


def clean_caption(text: str) -> str:
    """Drop the start token and everything from the end token on; trim spaces."""
    return text.split("<end_of_text>")[0].replace("<start_of_text>", "").strip()

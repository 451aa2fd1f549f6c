"""A Python twin of the LLaDA loop's fast mode on the reference model, with pluggable KV-cache policies.

The twin runs the reference's ops (rms_norm, RoPE, SDPA, the same weights) layer by layer so that
a step can compute only some positions against cached keys and values, as Fast-dLLM does:

* ``none``     - every step a full forward (threshold decoding on exact logits);
* ``prefix``   - full forward at each block's first step; later steps compute the block and the
                 masked suffix against the cached prompt and finished blocks;
* ``dual``     - also the suffix is cached: later steps compute only the block;
* ``interval`` - prefix/dual plus a full refresh every ``every`` steps;
* ``adaptive`` - prefix/dual plus, per step and layer, a drift test of the block queries' attention
                 over the cached span against the attention when that layer was last refreshed;
                 past ``bound`` the cached span is recomputed from that layer up (``from_layer``) or
                 at the drifted layers only (``layers``), from the stored layer inputs.

Cost is counted in token-layers (one position through one layer); ``forward_equiv`` divides by
T * n_layers, so a full forward is 1. ``diagnose=True`` also runs the exact full forward at every
cached step and records how far the cached K/V and the logits are from it.

The LM head is evaluated on the rows that are not all zero; the zero rows' logits are exactly 0.0,
so argmax and the float64 softmax over all 138752 columns follow in closed form (see full_vocab).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dynin_rt.reference.model import apply_rope, rms_norm
from dynin_rt.tokens import MASK_ID


@dataclass
class Policy:
    cache: str = "dual"  # "none" | "prefix" | "dual"
    every: int = 0  # interval: a full forward at least every `every` steps (0: only at block starts)
    bound: float = 0.0  # adaptive: drift bound (0: off)
    scope: str = "from_layer"  # adaptive: "from_layer" (that layer and deeper) or "layers" (drifted ones)
    select: str = "threshold"  # "threshold" | "factor" | "topk" (the exact schedule)
    threshold: float = 0.9
    factor: float = 1.0

    def name(self) -> str:
        rule = {"threshold": f"t{self.threshold:g}", "factor": f"f{self.factor:g}", "topk": "topk"}[self.select]
        extra = f"+every{self.every}" if self.every else ""
        extra += f"+drift{self.bound:g}{'' if self.scope == 'from_layer' else '-layers'}" if self.bound else ""
        return f"{self.cache}{extra}:{rule}"


@dataclass
class Trace:
    forwards: int = 0
    token_layers: int = 0
    steps: int = 0
    refreshes: int = 0  # full forwards after a block's first step, plus steps with a drift refresh
    committed: list = field(default_factory=list)
    kv_error: list = field(default_factory=list)  # per cached step: [n_layers] relative K error on the span
    top1_agree: list = field(default_factory=list)  # per cached step: fraction of candidates whose argmax matches
    commit_agree: list = field(default_factory=list)  # per cached step: same committed (position, token) set
    drift: list = field(default_factory=list)  # every drift value tested: (layer, value)


class CachedTwin:
    """The reference model's forward, split per layer, with a KV cache for one canvas row."""

    def __init__(self, ref):
        self.ref = ref
        self.cfg = ref.config
        tr = ref.model.transformer
        self.blocks = list(tr.blocks)
        self.wte = tr.wte.weight
        self.ln_f = tr.ln_f.weight
        head = tr.ff_out.weight
        nonzero = (head != 0).any(dim=1)
        self.head_rows = nonzero.nonzero()[:, 0]
        self.head = head[self.head_rows]
        zero = (~nonzero).nonzero()[:, 0]
        self.n_zero = int(zero.numel())
        self.first_zero = int(zero[0]) if self.n_zero else -1

    # -- one layer on some positions ---------------------------------------------------------------
    def _qkv(self, block, x, pos):
        # x [n, D] rows at positions pos [n] -> q, k, v [H, n, hd] (RoPE applied)
        nh, hd = self.cfg.n_heads, self.cfg.head_dim
        h = rms_norm(x[None], block.attn_norm.weight, self.cfg.rms_norm_eps)
        sin, cos = self.ref._rope(int(pos.max()) + 1, x.device)
        sin, cos = sin[pos], cos[pos]
        q = block.q_proj(h).view(1, -1, nh, hd).transpose(1, 2)
        k = block.k_proj(h).view(1, -1, nh, hd).transpose(1, 2)
        v = block.v_proj(h).view(1, -1, nh, hd).transpose(1, 2)
        return apply_rope(q, sin, cos)[0], apply_rope(k, sin, cos)[0], v[0]

    def _finish(self, block, x, q, k_all, v_all, key_bias):
        # attention of q [H, n, hd] over k_all, v_all [H, T, hd]; the block's residual and MLP
        att = F.scaled_dot_product_attention(q[None], k_all[None], v_all[None], attn_mask=key_bias)
        att = att[0].transpose(0, 1).reshape(x.shape[0], -1)
        x = x + block.attn_out(att)
        h = rms_norm(x, block.ff_norm.weight, self.cfg.rms_norm_eps)
        return x + block.ff_out(F.silu(block.ff_proj(h)) * block.up_proj(h))

    def _bias(self, keep, n):
        # keys with keep 0 get the official finfo.min bias; None when nothing is masked
        if keep is None:
            return None
        b = torch.zeros(1, 1, n, keep.numel())
        b[..., keep == 0] = torch.finfo(torch.float32).min
        return b

    # -- forwards ----------------------------------------------------------------------------------
    def full(self, ids, keep, state):
        """Every position; fills state (K, V, layer inputs, reference attention). ids [T] -> hidden [T, D]."""
        t = ids.numel()
        pos = torch.arange(t)
        x = self.wte[ids]
        state.k, state.v, state.h_in = [], [], []
        for block in self.blocks:
            state.h_in.append(x.clone())
            q, k, v = self._qkv(block, x, pos)
            state.k.append(k)
            state.v.append(v)
            x = self._finish(block, x, q, k, v, self._bias(keep, t))
        return x

    def partial(self, ids, keep, state, active, span, policy, queries, trace):
        """Compute positions ``active`` [n] (sorted) against the cache; ``span`` [m] (sorted) the cached
        positions. With a drift bound, a layer whose queries' attention over the span drifted past it
        recomputes the span there (and, scope "from_layer", in every deeper layer) from the stored
        layer inputs. -> hidden [T, D], meaningful on the computed rows (active among them)."""
        t = ids.numel()
        x = self.wte[ids[active]]
        computed = active
        both = torch.cat([span, active]).sort().values
        in_span = torch.isin(both, span)
        refreshing = False  # scope "from_layer": every layer from the first drifted one
        for li, block in enumerate(self.blocks):
            state.h_in[li][computed] = x
            drifted = refreshing
            if policy.bound > 0 and not refreshing:
                value = self._drift(li, block, keep, state, span, queries)
                trace.drift.append((li, value))
                drifted = value > policy.bound
            if not drifted:
                q, k, v = self._qkv(block, x, computed)
                state.k[li][:, computed] = k
                state.v[li][:, computed] = v
                x = self._finish(block, x, q, state.k[li], state.v[li], self._bias(keep, len(computed)))
                trace.token_layers += len(computed)
                continue
            if not refreshing:
                trace.refreshes += 1
            refreshing = policy.scope == "from_layer"
            xin = state.h_in[li][both]
            q, k, v = self._qkv(block, xin, both)
            state.k[li][:, both] = k
            state.v[li][:, both] = v
            out = self._finish(block, xin, q, state.k[li], state.v[li], self._bias(keep, len(both)))
            trace.token_layers += len(both)
            state.remember(li, self, keep, queries)
            if refreshing:
                x, computed = out, both
            else:
                if li + 1 < len(self.blocks):
                    state.h_in[li + 1][span] = out[in_span]
                x = out[~in_span]
        x_full = torch.zeros(t, self.cfg.d_model)
        x_full[computed] = x
        return x_full

    def _drift(self, li, block, keep, state, span, queries):
        """1 - cosine similarity of the queries' attention over the cached span, now vs at the layer's
        last refresh (heads and queries flattened)."""
        att = self._attention(li, block, state, queries, keep)[:, :, span]
        ref = state.ref_att[li][:, :, span]
        return 1.0 - float(F.cosine_similarity(att.flatten(), ref.flatten(), dim=0))

    def _attention(self, li, block, state, queries, keep):
        # attention probabilities [H, nq, T] of the positions `queries` (from their stored layer input)
        q, _, _ = self._qkv(block, state.h_in[li][queries], queries)
        scores = q @ state.k[li].transpose(1, 2) / math.sqrt(self.cfg.head_dim)
        if keep is not None:
            scores = scores.masked_fill(keep[None, None] == 0, float("-inf"))
        return scores.softmax(-1)

    def full_vocab(self, hidden):
        """hidden [n, D] -> (argmax token [n], float64 softmax probability of it [n]) over the whole
        vocabulary, the zero rows entering as exact zeros."""
        h = rms_norm(hidden, self.ln_f, self.cfg.rms_norm_eps)
        logits = (h @ self.head.T).double()
        top, arg = logits.max(dim=1)
        tok = self.head_rows[arg]
        if self.n_zero:
            below = (top < 0) | ((top == 0) & (self.first_zero < tok))
            tok = torch.where(below, torch.full_like(tok, self.first_zero), tok)
            m = top.clamp(min=0.0)
            denom = (logits - m[:, None]).exp().sum(1) + self.n_zero * (-m).exp()
        else:
            m = top
            denom = (logits - m[:, None]).exp().sum(1)
        return tok, (top - m).exp() / denom


class _State:
    def __init__(self):
        self.k = self.v = self.h_in = None
        self.ref_att = {}

    def remember(self, li, twin, keep, queries):
        self.ref_att[li] = twin._attention(li, twin.blocks[li], self, queries, keep)


def _select(tok, conf, cand, policy, k):
    """Positions of cand [n] to commit: threshold / factor rule (at least one) or the top k."""
    order = sorted(range(len(cand)), key=lambda i: -float(conf[i]))  # stable: canvas order on ties
    if policy.select == "topk":
        take = min(k, len(cand))
    elif policy.select == "threshold":
        take = max(1, sum(1 for i in order if conf[i] >= policy.threshold))
    else:
        take = 1
        for n in range(len(order), 0, -1):
            if (n + 1) * (1.0 - float(conf[order[n - 1]])) < policy.factor:
                take = n
                break
    return [order[i] for i in range(take)]


@torch.no_grad()
def generate(twin: CachedTwin, prompt, keep, gen_length, block_length, steps, policy: Policy, diagnose=False):
    """The LLaDA block loop (temperature 0, low-confidence) with the policy's cache and rule.
    prompt [P] ids, keep [P + G] or None -> (canvas [P + G], Trace)."""
    from dynin_rt.reference.samplers import get_num_transfer_tokens

    p = prompt.numel()
    x = torch.cat([prompt, torch.full((gen_length,), MASK_ID, dtype=torch.long)])
    t_len = x.numel()
    n_blocks = gen_length // block_length
    per_block = steps // n_blocks
    trace = Trace()
    state = _State()
    n_layers = len(twin.blocks)
    since = 0
    for blk in range(n_blocks):
        s, e = p + blk * block_length, p + (blk + 1) * block_length
        sched = get_num_transfer_tokens((x[s:e] == MASK_ID)[None], per_block)[0]
        max_steps = per_block if policy.select == "topk" else block_length
        block_pos = torch.arange(s, e)
        for i in range(max_steps):
            cand = block_pos[x[s:e] == MASK_ID]
            if len(cand) == 0:
                if policy.select == "topk":
                    continue
                break
            full = policy.cache == "none" or i == 0 or (policy.every and since >= policy.every)
            if full:
                hidden = twin.full(x, keep, state)
                trace.token_layers += t_len * n_layers
                trace.refreshes += int(i > 0 and policy.cache != "none")
                since = 1
                if policy.bound:
                    for li in range(n_layers):
                        state.remember(li, twin, keep, block_pos)
            else:
                active = torch.arange(s, e if policy.cache == "dual" else t_len)
                span = torch.cat([torch.arange(0, s), torch.arange(e, t_len)]) if policy.cache == "dual" else torch.arange(0, s)
                if keep is not None:
                    span = span[keep[span] != 0]
                hidden = twin.partial(x, keep, state, active, span, policy, block_pos, trace)
                since += 1
            trace.forwards += 1
            tok, conf = twin.full_vocab(hidden[cand])
            chosen = _select(tok, conf, cand, policy, int(sched[i]) if i < len(sched) else 0)
            if diagnose and not full:
                _diagnose(twin, x, keep, state, tok, cand, chosen, policy, sched, i, span, trace)
            x[cand[chosen]] = tok[chosen]
            trace.steps += 1
            trace.committed.append(len(chosen))
    return x, trace


def _diagnose(twin, x, keep, state, tok, cand, chosen, policy, sched, i, span, trace):
    """Exact full forward of the same canvas: K error on the cached span per layer, argmax and
    committed-set agreement with the cached step."""
    fresh = _State()
    hidden = twin.full(x, keep, fresh)
    errs = []
    for li in range(len(twin.blocks)):
        ref = fresh.k[li][:, span]
        errs.append(float((state.k[li][:, span] - ref).norm() / ref.norm().clamp(min=1e-30)))
    trace.kv_error.append(errs)
    tok_exact, conf_exact = twin.full_vocab(hidden[cand])
    trace.top1_agree.append(float((tok_exact == tok).float().mean()))
    chosen_exact = _select(tok_exact, conf_exact, cand, policy, int(sched[i]) if i < len(sched) else 0)
    a = {(int(cand[j]), int(tok[j])) for j in chosen}
    b = {(int(cand[j]), int(tok_exact[j])) for j in chosen_exact}
    trace.commit_agree.append(float(a == b))

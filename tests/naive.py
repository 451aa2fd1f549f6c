"""An independent float64 numpy transcription of the LLaDA block (docs/model.md), written from
the description with explicit loops over heads and plain formulas, to pin the reference's semantics."""
import numpy as np


def rms(x, w, eps):
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def rope(x, positions, theta):
    # x [T, D]: rotate pairs (j, j + D/2) by angle pos * theta^(-2j/D).
    t, d = x.shape
    half = d // 2
    out = np.empty_like(x)
    for j in range(half):
        ang = positions * theta ** (-2.0 * j / d)
        c, s = np.cos(ang), np.sin(ang)
        out[:, j] = x[:, j] * c - x[:, j + half] * s
        out[:, j + half] = x[:, j + half] * c + x[:, j] * s
    return out


def forward(state, cfg, ids, keep=None):
    """ids [T] ints; keep [T] (1 real, 0 pad) or None -> logits [T, V] float64."""
    g = lambda k: state[k].double().numpy()  # noqa: E731
    d, nh = cfg["d_model"], cfg["n_heads"]
    hd = d // nh
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    t = len(ids)
    positions = np.arange(t, dtype=np.float64)
    x = g("model.transformer.wte.weight")[ids]
    allowed = np.ones((t, t), bool) if keep is None else np.outer(keep, keep).astype(bool)
    for i in range(cfg["n_layers"]):
        p = f"model.transformer.blocks.{i}."
        h = rms(x, g(p + "attn_norm.weight"), eps)
        q, k, v = h @ g(p + "q_proj.weight").T, h @ g(p + "k_proj.weight").T, h @ g(p + "v_proj.weight").T
        heads = []
        for head in range(nh):
            sl = slice(head * hd, (head + 1) * hd)
            qh, kh = rope(q[:, sl], positions, theta), rope(k[:, sl], positions, theta)
            scores = qh @ kh.T / np.sqrt(hd)
            scores = np.where(allowed, scores, -np.inf)
            out = np.zeros((t, hd))
            for r in range(t):
                if not allowed[r].any():
                    continue  # a pad query row: never read
                e = np.exp(scores[r] - scores[r].max())
                out[r] = (e / e.sum()) @ v[:, sl]
            heads.append(out)
        x = x + np.concatenate(heads, 1) @ g(p + "attn_out.weight").T
        h = rms(x, g(p + "ff_norm.weight"), eps)
        a, u = h @ g(p + "ff_proj.weight").T, h @ g(p + "up_proj.weight").T
        x = x + ((a / (1 + np.exp(-a))) * u) @ g(p + "ff_out.weight").T
    x = rms(x, g("model.transformer.ln_f.weight"), eps)
    return x @ g("model.transformer.ff_out.weight").T

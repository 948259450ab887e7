#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fits the rational tanh of the inference kernels (src/rnn-kernels-act.c,
vtanh_fast) and measures it.

    tanh x ~ x P(x^2) / Q(x^2),  |x| <= 9 (tanh rounds to +-1 in float beyond)

P and Q have degree NP-1 and NQ in x^2 (default 4 and 4), P(0) = Q(0) = 1,
so that tanh x rounds to x near 0 (no bias in the gain of small signals).
The fit minimises the largest relative error on a dense grid by Lawson's
iteration: linearised least squares  x (P(z) - 1) - t (Q(z) - 1) = t - x
(z = x^2, t = tanh x), rows divided by t, with weights raised where the
error is largest.  It prints the coefficients as float literals for the
kernel, then the error of the two float32 evaluations the kernel does
(Horner's scheme for the LSTM, Estrin's for the GRU, with fused
multiply-adds, emulated in double and rounded to float at each step, the
argument clamped to |x| <= CLAMP) against tanh in double over |x| <= 12,
in ulp of the result, and that of the sigmoid (1 + tanh (x/2)) / 2 in
absolute terms over |x| <= 24.  CLAMP is where both evaluations give
exactly 1.

Usage: scripts/fit-tanh.py [NP NQ]
"""

import sys

import numpy as np

FIT_RANGE = 9.0
CLAMP = 8.7


def fit(n_p, n_q, iters=300):
    x = np.sort(np.concatenate([np.linspace(0, FIT_RANGE, 40001)[1:],
                                np.geomspace(1e-6, 0.1, 2000)]))
    t, z = np.tanh(x), x * x
    a = np.hstack([x[:, None] * z[:, None] ** np.arange(1, n_p),
                   -(t[:, None] * z[:, None] ** np.arange(1, n_q + 1))]) / t[:, None]
    b = (t - x) / t
    w = np.ones_like(x)
    best = None
    for _ in range(iters):
        sol, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
        p = np.concatenate([[1.0], sol[:n_p - 1]])
        q = np.concatenate([[1.0], sol[n_p - 1:]])
        err = np.abs(x * np.polyval(p[::-1], z) / np.polyval(q[::-1], z) / t - 1)
        m = err.max()
        if best is None or m < best[0]:
            best = (m, p, q)
        w = w * np.sqrt(err / m) + 1e-15
        w /= w.sum()
    return best


def f32(v):
    return np.asarray(v, dtype=np.float64).astype(np.float32).astype(np.float64)


def fma(a, b, c):
    """a*b + c rounded once to float (exact product in double for floats)."""
    return f32(a * b + c)


def estrin5(z, z2, z4, c):
    """c0 + c1 z + c2 z^2 + c3 z^3 + c4 z^4 as vtanh_fast_short () does."""
    return fma(z4, c[4], fma(z2, fma(z, c[3], c[2]), fma(z, c[1], c[0])))


def horner5(z, c):
    """The same as vtanh_fast () does: (((c4 z + c3) z + c2) z + c1) z + c0,
    one rounding per step."""
    r = fma(z, c[4], c[3])
    for i in (2, 1, 0):
        r = fma(r, z, c[i])
    return r


def evaluate(xf, p, q, horner):
    x = np.clip(xf, -CLAMP, CLAMP)
    z = f32(x * x)
    if horner:
        num = f32(x * horner5(z, f32(p)))
        den = horner5(z, f32(q))
    else:
        z2 = f32(z * z)
        z4 = f32(z2 * z2)
        num = f32(x * estrin5(z, z2, z4, f32(p)))
        den = estrin5(z, z2, z4, f32(q))
    return f32(num / den)


def measure(p, q, horner):
    """max and mean ulp of tanh, where the max is, and the largest
    absolute error of the sigmoid"""
    xf = f32(np.linspace(-12, 12, 2_400_001))
    ref = np.tanh(xf)
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    e = np.abs(evaluate(xf, p, q, horner) - ref) / ulp
    xs = f32(np.linspace(-24, 24, 2_400_001))
    sig = fma(evaluate(f32(xs * 0.5), p, q, horner), 0.5, 0.5)
    se = np.abs(sig - 1 / (1 + np.exp(-xs)))
    return e.max(), xf[e.argmax()], e.mean(), se.max()


def main():
    n_p, n_q = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else (5, 4)
    m, p, q = fit(n_p, n_q)
    print(f"fit: max relative error {m:.3g} (double) with P of {n_p} and Q of {n_q} + 1 coefficients")
    print("P:", ", ".join(f"{np.float32(c):.9e}f" for c in p))
    print("Q:", ", ".join(f"{np.float32(c):.9e}f" for c in q))
    if n_p == 5 and n_q == 4:
        for name, horner in (("Horner (LSTM)", True), ("Estrin (GRU)", False)):
            e, at, mean_ulp, se = measure(p, q, horner)
            print(f"float32 evaluation, {name}: tanh max {e:.2f} ulp at x = {at:.4f}, "
                  f"mean {mean_ulp:.2f} ulp; sigmoid max abs error {se:.3g}")


if __name__ == "__main__":
    main()

"""Sympy derivations of S1 and S6, executed by the checks (nothing here is a pasted result).

Each function derives its statement step by step and returns the derived expressions; it raises
CheckFailed if a step does not come out as the statement claims. Results are cached per process
(the derivations take seconds and have no inputs).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp
import sympy.stats as sps

from deepfusion.theory.check import require

eps, t, theta, phi = sp.symbols("epsilon t theta phi", positive=True)
rho = sp.Symbol("rho", real=True)
sigma, n, d = sp.symbols("sigma n d", positive=True)
p_tail, n_classes = sp.symbols("p C", positive=True)  # S6(c): one class's tail, number of classes


def _zero(expr, what):
    res = sp.simplify(sp.expand_trig(expr))
    require(res == 0, f"{what}: residual {res}")


@lru_cache(maxsize=1)
def derive_s1_half_angle():
    """S1 step 1: the directions of mu + e, ||mu|| = 1, ||e|| <= eps < 1, fill a cap of half-angle
    arcsin(eps) around mu.

    The extreme direction lies on the ball's boundary, e = eps (cos t, sin t) in the plane of mu and e
    (an interior point is on a segment from mu to a boundary point, which turns by less). The angle psi
    of mu + e from mu has tan psi = eps sin t / (1 + eps cos t); it is largest where d/dt tan psi = 0,
    i.e. cos t = -eps (e orthogonal to mu + e: the tangent point), and there sin psi = eps."""
    tan_psi = eps * sp.sin(t) / (1 + eps * sp.cos(t))
    crit = sp.solve(sp.numer(sp.together(sp.diff(tan_psi, t))).subs(sp.sin(t) ** 2, 1 - sp.cos(t) ** 2), sp.cos(t))
    require(crit == [-eps], f"stationary points of the angle: {crit}")
    at = {sp.cos(t): -eps, sp.sin(t): sp.sqrt(1 - eps**2)}
    tan_at = tan_psi.subs(at)
    sin2 = sp.simplify(tan_at**2 / (1 + tan_at**2))
    _zero(sin2 - eps**2, "sin^2 of the half-angle")
    # the tangent point is orthogonal to its noise: <mu + e, e> = 0 there
    _zero(((1 + eps * sp.cos(t)) * eps * sp.cos(t) + eps**2 * sp.sin(t) ** 2).subs(at), "tangency")
    return sp.asin(eps)


@lru_cache(maxsize=1)
def derive_s1_threshold():
    """S1 step 2: two unit means at angle theta = arccos(rho); the worst noise rotates each token
    towards the other by arcsin(eps), so the smallest angle between cross-class tokens is
    theta - 2 arcsin(eps) (spherical triangle inequality, attained in the means' plane). The inner
    product stays <= 0 iff that angle is >= pi/2: the boundary theta - 2 arcsin(eps) = pi/2 gives
    eps_max = sin((arccos(rho) - pi/2) / 2). Also checks the tangent-point construction: noise of
    norm eps whose tokens have inner product (1 - eps^2) cos(theta - 2 arcsin eps), zero at eps_max."""
    half = derive_s1_half_angle()
    sol = sp.solve(sp.Eq(theta - 2 * half, sp.pi / 2), eps)
    require(len(sol) == 1, f"boundary solutions {sol}")
    e_max = sol[0]
    _zero(e_max - sp.sin((theta - sp.pi / 2) / 2), "threshold in theta")
    # construction in the means' plane, written with psi = arcsin(eps) in [0, pi/2), so that
    # eps = sin psi and sqrt(1 - eps^2) = cos psi: mu_a = (1, 0), mu_b = (cos theta, sin theta)
    psi = sp.Symbol("psi", positive=True)
    xa = sp.cos(psi) * sp.Matrix([sp.cos(psi), sp.sin(psi)])
    xb = sp.cos(psi) * sp.Matrix([sp.cos(theta - psi), sp.sin(theta - psi)])
    ea, eb = xa - sp.Matrix([1, 0]), xb - sp.Matrix([sp.cos(theta), sp.sin(theta)])
    _zero(ea.dot(ea) - sp.sin(psi) ** 2, "||e_a|| = eps")
    _zero(eb.dot(eb) - sp.sin(psi) ** 2, "||e_b|| = eps")
    _zero(xa.dot(xb) - sp.cos(psi) ** 2 * sp.cos(theta - 2 * psi), "construction inner product")
    # at eps_max, psi = (theta - pi/2)/2 (in [0, pi/4] for theta in [pi/2, pi]): the angle is pi/2
    psi_max = (theta - sp.pi / 2) / 2
    _zero(sp.sin(psi_max) - e_max, "sin psi_max = eps_max")
    _zero(sp.cos(theta - 2 * psi_max), "construction inner product at eps_max")
    # same-class: two tokens of one class are at most 2 arcsin(eps) apart; positive iff < pi/2
    same = sp.solve(sp.Eq(2 * half, sp.pi / 2), eps)
    require(same == [1 / sp.sqrt(2)], f"same-class limit {same}")
    # eps_max <= 1/sqrt(2) because theta <= pi; equality only at theta = pi (rho = -1)
    _zero(e_max.subs(theta, sp.pi) - 1 / sp.sqrt(2), "eps_max at rho = -1")
    return sp.sin((sp.acos(rho) - sp.pi / 2) / 2)


@lru_cache(maxsize=1)
def derive_s1_simple_bound():
    """S1 step 3: the Cauchy-Schwarz bound and its gap to eps_max.

    <mu_a + e_a, mu_b + e_b> <= rho + 2 eps + eps^2, which is <= 0 iff eps <= sqrt(1 - rho) - 1.
    With theta = 2 phi, phi in [pi/4, pi/2] (rho in [-1, 0]): eps_max = sin(phi - pi/4) and
    sqrt(1 - rho) - 1 = sqrt(2) sin(phi) - 1, so eps_max - bound = 1 - sin(phi + pi/4) >= 0,
    zero only at phi = pi/4 (rho = 0). Returns (bound(rho), gap(phi))."""
    e = sp.Symbol("e", real=True)
    roots = sp.solve(sp.Eq(rho + 2 * e + e**2, 0), e)
    roots = [r for r in roots if r.subs(rho, -1) > 0]  # the other root is below -1
    require(len(roots) == 1, f"roots {roots}")
    bound = roots[0]
    _zero(bound - (sp.sqrt(1 - rho) - 1), "Cauchy-Schwarz bound")
    e_max = derive_s1_threshold().subs(sp.acos(rho), 2 * phi)  # theta = arccos(rho) = 2 phi
    _zero(e_max - sp.sin(phi - sp.pi / 4), "eps_max in phi")
    b = sp.sqrt(2) * sp.sin(phi) - 1
    _zero((1 - sp.cos(2 * phi)) - (b + 1) ** 2, "sqrt(1 - cos 2phi) = sqrt(2) sin phi (sin phi >= 0)")
    gap = sp.simplify(e_max - b)
    _zero(gap - (1 - sp.sin(phi + sp.pi / 4)), "gap")
    zeros = sp.solveset(sp.Eq(gap, 0), phi, sp.Interval(sp.pi / 4, sp.pi / 2))
    require(zeros == sp.FiniteSet(sp.pi / 4), f"gap zeros {zeros}")
    return bound, 1 - sp.sin(phi + sp.pi / 4)


@lru_cache(maxsize=1)
def derive_s6():
    """S6: mean noise, its chi-square law and the smallest batch.

    Noise e_i ~ N(0, sigma^2/d I_d): a coordinate of the mean of n draws has variance
    sum_i (1/n)^2 sigma^2/d = sigma^2/(d n), so ||e_bar||^2 = sigma^2/(d n) Q with Q ~ chi^2_d,
    E||e_bar||^2 = sigma^2/n. Setting that to eps^2 gives n_min = sigma^2/eps^2. Var(Q/d) = 2/d, so by
    Chebyshev P(|Q/d - 1| >= 2/sqrt(d)) <= 1/2: the median of Q/d, hence the 50% crossing over
    n_min, lies within 2/sqrt(d) of 1. Returns (n_min, Var ||e_bar||^2, crossing tolerance 2/sqrt(d))."""
    i = sp.Symbol("i", integer=True, positive=True)
    var_coord = sp.summation((1 / n) ** 2 * sigma**2 / d, (i, 1, n))
    _zero(var_coord - sigma**2 / (d * n), "variance of a mean coordinate")
    Q = sps.ChiSquared("Q", d)
    mean_q, var_q = sp.simplify(sps.E(Q)), sp.simplify(sps.variance(Q))
    require(mean_q == d and sp.simplify(var_q - 2 * d) == 0, f"chi^2_d moments {mean_q}, {var_q}")
    mean_sq = sp.simplify(var_coord * mean_q)
    _zero(mean_sq - sigma**2 / n, "E||e_bar||^2")
    sol = sp.solve(sp.Eq(mean_sq, eps**2), n)
    require(len(sol) == 1, f"n_min solutions {sol}")
    n_min = sol[0]
    _zero(n_min - sigma**2 / eps**2, "n_min")
    tol = sp.Symbol("tau", positive=True)
    cheb = sp.solve(sp.Eq(sp.simplify(var_q / d**2) / tol**2, sp.Rational(1, 2)), tol)
    require(len(cheb) == 1, f"Chebyshev radius {cheb}")
    _zero(cheb[0] - 2 / sp.sqrt(d), "Chebyshev radius")
    require(sp.limit(cheb[0], d, sp.oo) == 0, "failed: sp.limit(cheb[0], d, sp.oo) == 0")
    var_sq = sp.simplify((sigma**2 / (d * n)) ** 2 * var_q)  # Var ||e_bar||^2 = 2 sigma^4/(d n^2)
    return n_min, var_sq, cheb[0]


@lru_cache(maxsize=1)
def derive_s6_crossing():
    """S6(c): C independent classes each exceed with probability p, so some class exceeds with
    probability 1 - (1 - p)^C; that equals 1/2 at p = 1 - 2^(-1/C), the upper tail a single class's
    chi^2_d law must have at the crossing. Returns (P(some exceeds) in p and C, the p at 1/2)."""
    p, k = p_tail, n_classes
    some = 1 - (1 - p) ** k
    sol = sp.solve(sp.Eq(some, sp.Rational(1, 2)), p)
    require(len(sol) == 1, f"crossing tail solutions {sol}")
    _zero(sol[0] - (1 - 2 ** (-1 / k)), "tail at the crossing")
    _zero(some.subs(k, 1) - p, "one class")
    return some, sol[0]

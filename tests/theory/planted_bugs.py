"""Planted bugs: one-token mutations of the theory code, for tests that the checks catch them.

Each bug names a function, a fragment of its source and the fragment's replacement. ``plant`` takes
the function's real source, applies the replacement (it must occur exactly once), compiles the result
in the module's namespace and puts it in place of the function, so the check under test runs the
mutated code and nothing else changes. Product code contains no switch for any of this.

Used in-process (``plant(name, monkeypatch)`` with the checks of ``unshrunk_checks``) and from a
``sitecustomize`` that a subprocess test writes into a temporary folder (``load_profile()`` and
``plant(name)`` at interpreter start, for ``python -O`` runs). Shrinking is switched off through
Hypothesis's public settings profiles, never through its private attributes.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import textwrap

from hypothesis import Phase, settings

from deepfusion.commands import verify

PROFILE = "planted-bugs"
settings.register_profile(PROFILE, phases=[Phase.explicit, Phase.reuse, Phase.generate])

# name -> (module, function, fragment, replacement, what it breaks)
BUGS = {
    "layer_map_abs": (
        "deepfusion.theory.fusion",
        "layer_map",
        "np.abs(dev_f)",
        "dev_f",
        "S2: the absolute value of the deviation factor dropped",
    ),
    "etf_snap_1e-3": (
        "deepfusion.theory.fusion",
        "layer_map_general",
        "u2 < 1e-12",
        "u2 < 1e-3",
        "S2: means up to 1e-3 off the ETF snapped onto it",
    ),
    "separated_strict": (
        "deepfusion.theory.bounds",
        "separated",
        "g <= 0",
        "g < 0",
        "S1: a zero cross-class inner product counted as not separated",
    ),
    "chi2_law_d_minus_1": (
        "deepfusion.theory.bounds",
        "mean_noise_law",
        "stats.chi2(d,",
        "stats.chi2(d - 1,",
        "S6: the law of the mean noise with d - 1 degrees of freedom",
    ),
    "chi2_exceed_d_minus_1": (
        "deepfusion.theory.bounds",
        "exceed_probability",
        "sigma**2, d)",
        "sigma**2, d - 1)",
        "S6: exceed probability with d - 1 degrees of freedom",
    ),
    "chi2_crossing_d_minus_1": (
        "deepfusion.theory.bounds",
        "crossing_n",
        "/ C), d)",
        "/ C), d - 1)",
        "S6: crossing with d - 1 degrees of freedom",
    ),
    "relu_cross_unclamped": (
        "deepfusion.theory.fusion",
        "relu_block_weights",
        "np.maximum(cross, 0.0)",
        "cross",
        "S1/S4: ReLU cross-class weights not clamped",
    ),
    "half_crossing_plus_one": (
        "deepfusion.theory.bounds",
        "half_crossing",
        "float(ns[i] +",
        "float(ns[i] + 1 +",
        "S6: the 50% crossing shifted by one",
    ),
    "half_crossing_right_end": (
        "deepfusion.theory.bounds",
        "half_crossing",
        "i = idx[0]",
        "i = idx[0] + 1",
        "S6: the 50% crossing read one interval late",
    ),
    # S8-S12, S5b
    "s8_self_term": (
        "deepfusion.theory.learned",
        "learned_logits",
        "r2 * n / (n - 1.0)",
        "r2",
        "S8: the self logit without its n/(n-1)",
    ),
    "s9_deviation_eigenvalue": (
        "deepfusion.theory.learned",
        "value_coefficients",
        "_f(lam_e) * (_f(a_self)",
        "_f(lam_mu) * (_f(a_self)",
        "S9: deviations scaled with the mean eigenvalue",
    ),
    "s10_bound_without_sqrt2": (
        "deepfusion.theory.layernorm",
        "ln_error_terms",
        "np.sqrt(2.0) * sin",
        "sin",
        "S10(b): the angle term without its sqrt(2)",
    ),
    "s10_pre_ln_alpha_d": (
        "deepfusion.theory.layernorm",
        "pre_ln_alpha",
        "np.sqrt(d)",
        "d",
        "S10(d): pre-LN residual weight with d instead of sqrt(d)",
    ),
    "s11_margin_sign": (
        "deepfusion.theory.learned",
        "multihead_fusion_margin",
        "fuse + denoise",
        "fuse - denoise",
        "S11: denoising counted against fusion",
    ),
    "s12_upper_bound": (
        "deepfusion.theory.ffn",
        "spread_bounds",
        "r * (1.0 + L) /",
        "r * (1.0 - L) /",
        "S12: upper spread bound with 1 - L",
    ),
    "s5b_eta": (
        "deepfusion.theory.perturbation",
        "layer_step",
        "2.0 * alpha * (1.0 + alpha) * a",
        "alpha * (1.0 + alpha) * a",
        "S5b: the cross term of eta halved",
    ),
    "s8_m_star_nu": (
        "deepfusion.theory.learned",
        "learned_m_star",
        "-(_f(nu) ** 2) * _f(beta_mu)",
        "-_f(nu) * _f(beta_mu)",
        "S8(b): m* with nu instead of nu^2",
    ),
    "s5b_centring_unsquared": (
        "deepfusion.theory.perturbation",
        "gaussian_delta_bound",
        "(2.0 * (n - 1) / n) ** 2",
        "(2.0 * (n - 1) / n)",
        "S5b: the centring factor of delta_0 not squared",
    ),
    # S13-S15
    "s13_drift_power": (
        "deepfusion.theory.dynamics",
        "uniform_drift_constants",
        "a**3 / (C - 1.0) ** 2",
        "a**2 / (C - 1.0) ** 2",
        "S13: the class drift constant with a^2 instead of a^3",
    ),
    "s13_no_centring": (
        "deepfusion.theory.dynamics",
        "score_gradient",
        "A * (g - (A * g).sum(1, keepdims=True))",
        "A * g",
        "S13: the softmax Jacobian without its row mean gbar",
    ),
    "s14_force_half": (
        "deepfusion.theory.dynamics",
        "class_force",
        "2.0 * a /",
        "a /",
        "S14: the class force without the other anchors' equal share",
    ),
    "s14_bracket_C": (
        "deepfusion.theory.dynamics",
        "class_bracket",
        "C * p_o / (C - 1.0)",
        "p_o",
        "S14: the other-class pull without its C/(C-1)",
    ),
    "s15_logit_sign": (
        "deepfusion.theory.dynamics",
        "logit_drift",
        "return -A * (g -",
        "return A * (g -",
        "S15(a): the logit drift with its sign flipped",
    ),
    "s5b_signed_max": (
        "deepfusion.theory.perturbation",
        "layer_step",
        "np.abs(H0 - np.diag(np.diag(H0))).max()",
        "(H0 - np.diag(np.diag(H0))).max()",
        "S5b: c from the signed, not the absolute, maximum",
    ),
}


def mutated(name):
    """The mutated function of bug ``name`` (the module is left untouched)."""
    module_name, func, fragment, replacement, _ = BUGS[name]
    module = importlib.import_module(module_name)
    src = textwrap.dedent(inspect.getsource(getattr(module, func)))
    count = src.count(fragment)
    if count != 1:
        raise RuntimeError(f"bug {name}: fragment {fragment!r} occurs {count} times in {func}; update the bug")
    namespace = dict(vars(module))
    exec(compile(src.replace(fragment, replacement), f"<planted {name}>", "exec"), namespace)
    return module, func, namespace[func]


def plant(name, monkeypatch=None):
    """Put bug ``name`` in place: through ``monkeypatch`` (undone after the test) or for good."""
    module, func, bad = mutated(name)
    if monkeypatch is not None:
        monkeypatch.setattr(module, func, bad)
    else:
        setattr(module, func, bad)


def load_profile() -> None:
    """Make Hypothesis skip the shrink phase for properties defined from now on: a planted bug makes a
    property fail, and shrinking the failure to a minimal example takes seconds that tell these tests
    nothing. A settings object takes the current profile's values for what it leaves unset when it is
    made, so this must run before the theory's property modules are imported (a ``sitecustomize``)."""
    settings.load_profile(PROFILE)


def unshrunk_checks() -> list:
    """Every check ``deepfusion verify`` runs, from copies of the theory's check and property modules
    made under the profile without shrinking (made once, then reused). The modules in use are left as
    they are; a bug planted in a theory module reaches the copies, which call it through its module."""
    global _UNSHRUNK
    if _UNSHRUNK is None:
        _UNSHRUNK = _copied_checks()
    return _UNSHRUNK


_UNSHRUNK = None


def _copied_checks() -> list:
    theory = importlib.import_module("deepfusion.theory")
    names = [
        f"{theory.__name__}.{m.name}"
        for m in pkgutil.iter_modules(theory.__path__)
        if m.name.startswith(("checks", "properties"))
    ]
    saved = {n: sys.modules.pop(n, None) for n in names}
    attributes = {n: vars(theory).get(n.rpartition(".")[2]) for n in names}
    for n in names:  # ``from deepfusion.theory import x`` takes the package's attribute when there is one
        vars(theory).pop(n.rpartition(".")[2], None)
    previous = settings.get_current_profile_name()
    settings.load_profile(PROFILE)
    try:
        return [c for module in verify.CHECK_MODULES for c in importlib.import_module(module).CHECKS]
    finally:
        settings.load_profile(previous)
        for n in names:
            sys.modules.pop(n, None)
            short = n.rpartition(".")[2]
            if saved[n] is not None:
                sys.modules[n] = saved[n]
            if attributes[n] is not None:
                setattr(theory, short, attributes[n])
            elif hasattr(theory, short):
                delattr(theory, short)

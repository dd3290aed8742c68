"""Random fields of set roughness: trabecular texture and slow soft-tissue variation.

`trabecular_texture` is the projected trabecular pattern: a stationary field
whose variogram grows as h^(2H) at small lags (H, the Hurst exponent, sets
the small-lag variogram slope that TBS measures: higher H, smoother and
better connected texture, higher TBS) and levels off beyond a correlation
length of a few trabeculae. `fbm_field` is fractional-Brownian-like
(spectrum |k|^-(2H+2), spectral synthesis on a padded grid, approximate),
used for slow soft-tissue variation. `exact_fbm_field` (Stein's circulant
embedding) gives exact fields for testing TBS.
"""

from __future__ import annotations

import numpy as np


def fbm_field(
    shape: tuple[int, int],
    spacing_mm: tuple[float, float],
    hurst: float,
    rng: np.random.Generator,
    pad: int = 2,
) -> np.ndarray:
    """A zero-mean, unit-variance field of Hurst exponent `hurst`, in physical units.

    Frequencies are in cycles/mm, so anisotropic pixels give an isotropic
    texture. The field is synthesised on a grid `pad` times larger and
    cropped, which removes the periodic wrap-around.
    """
    if not 0.0 < hurst < 1.0:
        raise ValueError(f"hurst must lie in (0, 1), got {hurst}")
    rows, cols = shape[0] * pad, shape[1] * pad
    k_row = np.fft.fftfreq(rows, d=spacing_mm[0])[:, None]
    k_col = np.fft.rfftfreq(cols, d=spacing_mm[1])[None, :]
    k = np.hypot(k_row, k_col)
    k[0, 0] = np.inf
    amplitude = k ** -(hurst + 1.0)
    noise = rng.standard_normal((rows, k_col.shape[1])) + 1j * rng.standard_normal(
        (rows, k_col.shape[1])
    )
    field = np.fft.irfft2(amplitude * noise, s=(rows, cols))[: shape[0], : shape[1]]
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def trabecular_texture(
    shape: tuple[int, int],
    spacing_mm: tuple[float, float],
    hurst: float,
    rng: np.random.Generator,
    correlation_mm: float = 4.0,
    reference_lag_mm: float = 3.0,
    pad: int = 2,
) -> np.ndarray:
    """A zero-mean stationary field with covariance exp(-(h / correlation_mm)^(2H)).

    Its variogram 2 (1 - exp(-(h / l)^(2H))) grows as h^(2H) at lags well
    below l and levels off beyond it, as trabeculae (about 1 mm apart) stop
    correlating after a few spacings; an fBm field instead puts most of its
    variance at the patch's own size, where it looks like a density gradient
    and not like texture. The field is scaled so that its variogram at
    `reference_lag_mm` is the same for every H (that of H = 0.5): H changes
    the variogram's slope at small lags, the texture's strength at the TBS
    scale stays put. Synthesised by circulant embedding on a grid `pad` times
    larger (negative eigenvalues, from the embedding's truncation, are set to
    zero), distances in mm so anisotropic pixels give an isotropic texture.
    """
    if not 0.0 < hurst < 1.0:
        raise ValueError(f"hurst must lie in (0, 1), got {hurst}")
    rows, cols = shape[0] * pad, shape[1] * pad
    y = np.minimum(np.arange(rows), rows - np.arange(rows)) * spacing_mm[0]
    x = np.minimum(np.arange(cols), cols - np.arange(cols)) * spacing_mm[1]
    covariance = np.exp(-((np.hypot(y[:, None], x[None, :]) / correlation_mm) ** (2 * hurst)))
    spectrum = np.clip(np.real(np.fft.fft2(covariance)), 0.0, None)
    white = rng.standard_normal((rows, cols))
    field = np.real(np.fft.ifft2(np.sqrt(spectrum) * np.fft.fft2(white)))[: shape[0], : shape[1]]
    reference = 1 - np.exp(-(reference_lag_mm / correlation_mm))
    at_lag = 1 - np.exp(-((reference_lag_mm / correlation_mm) ** (2 * hurst)))
    return field * np.sqrt(reference / at_lag)


def exact_fbm_field(
    shape: tuple[int, int],
    hurst: float,
    rng: np.random.Generator,
    tolerance: float = 1e-10,
) -> np.ndarray:
    """An EXACT 2-D fractional Brownian surface: E[(X(p) - X(q))^2] = |p - q|^(2 hurst).

    Distances are in pixels (the grid spacing is 1) and X(0, 0) = 0; fBm is
    self-similar, so a field for pixels of s mm is this one with variogram
    (h_mm / s)^(2H). Method: Stein (2002), "Fast and exact simulation of
    fractional Brownian surfaces", J. Comput. Graph. Stat. 11:587, in the
    form of Kroese & Botev (2015). With alpha = 2H the stationary covariance

        rho(r) = c0 - r^alpha + c2 r^2        for r <= 1
        rho(r) = beta (R - r)^3 / r          for 1 < r <= R, 0 beyond,

    (R = 1, beta = 0, c2 = alpha/2, c0 = 1 - alpha/2 for H <= 0.75;
    R = 2, beta = alpha (2 - alpha) / (3 R (R^2 - 1)),
    c2 = (alpha - beta (R-1)^2 (R+2)) / 2, c0 = beta (R-1)^3 + 1 - c2 above)
    is embedded on a block-circulant grid over [0, R]^2 and synthesised by FFT
    (both real and imaginary parts are independent draws; one is used). The
    stationary field Y has Var(Y(x) - Y(y)) = 2 r^alpha - 2 c2 r^2 for r <= 1;
    adding the independent drift sqrt(2 c2) (x Z1 + y Z2) supplies the
    missing 2 c2 r^2, giving fBm with variogram 2 r^alpha exactly. Exactness
    needs every pair within distance 1, so the output occupies the square
    [0, 1/sqrt(2)]^2, which is then rescaled to unit pixel spacing.

    Raises ValueError if the embedding has an eigenvalue below
    -`tolerance` x the largest (the method guarantees none beyond round-off).
    """
    if not 0.0 < hurst < 1.0:
        raise ValueError(f"hurst must lie in (0, 1), got {hurst}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 2 or cols < 2:
        raise ValueError(f"shape must be at least 2 x 2 pixels, got {shape}")
    alpha = 2.0 * hurst
    if hurst <= 0.75:
        big_r, beta, c2 = 1.0, 0.0, alpha / 2.0
        c0 = 1.0 - alpha / 2.0
    else:
        big_r = 2.0
        beta = alpha * (2.0 - alpha) / (3.0 * big_r * (big_r**2 - 1.0))
        c2 = (alpha - beta * (big_r - 1.0) ** 2 * (big_r + 2.0)) / 2.0
        c0 = beta * (big_r - 1.0) ** 3 + 1.0 - c2
    n_out = max(rows, cols)
    step = 1.0 / (np.sqrt(2.0) * (n_out - 1))  # output square side 1/sqrt(2)
    m = int(np.ceil(big_r / step)) + 1  # grid points on [0, R] per axis
    t = np.arange(m) * step
    r = np.hypot(t[:, None], t[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(r <= big_r, beta * (big_r - r) ** 3 / np.maximum(r, 1e-300), 0.0)
    cov = np.where(r <= 1.0, c0 - r**alpha + c2 * r**2, tail)
    # Even extension to a (2m-2) x (2m-2) periodic grid: block circulant.
    cov = np.concatenate([cov, cov[:, -2:0:-1]], axis=1)
    cov = np.concatenate([cov, cov[-2:0:-1, :]], axis=0)
    size = cov.shape[0] * cov.shape[1]
    eigen = np.real(np.fft.fft2(cov))
    if eigen.min() < -tolerance * eigen.max():
        raise ValueError(
            f"circulant embedding not non-negative definite for hurst={hurst}: "
            f"min eigenvalue {eigen.min():.3g} vs max {eigen.max():.3g}"
        )
    amplitude = np.sqrt(np.clip(eigen, 0.0, None) / size)
    noise = rng.standard_normal(cov.shape) + 1j * rng.standard_normal(cov.shape)
    field = np.real(np.fft.fft2(amplitude * noise))[:rows, :cols]
    field = field - field[0, 0]
    y = np.arange(rows)[:, None] * step
    x = np.arange(cols)[None, :] * step
    z1, z2 = rng.standard_normal(2)
    field = field + np.sqrt(2.0 * c2) * (y * z1 + x * z2)
    # Variogram 2 (k step)^alpha in pixels k -> k^alpha.
    return field * step ** (-hurst) / np.sqrt(2.0)

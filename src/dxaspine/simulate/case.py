"""Sampling one simulated patient: every random choice of a scan, as data.

`sample_case` draws a `Case` (patient, spine, vertebrae, soft tissue,
artefacts) from documented ranges; rendering is then a pure function of the
case, so a test can change one thing (say soft-tissue thickness) at a fixed
anatomy. Ranges and rates are in `AnatomyRanges` and `ArtefactRates`; their
sources are in docs/physics.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

VERTEBRA_NAMES = ("T12", "L1", "L2", "L3", "L4", "L5")
LABEL_OF = {"T12": 0, "L1": 1, "L2": 2, "L3": 3, "L4": 4, "L5": 0}

# NHANES 2005-2008 L1-L4 BMD (Hologic), g/cm2: (age, mean, sd), women; men ~flat.
NHANES_WOMEN = (
    (25, 1.064, 0.106),
    (35, 1.060, 0.115),
    (45, 1.040, 0.125),
    (55, 0.993, 0.141),
    (65, 0.950, 0.155),
    (75, 0.902, 0.167),
    (85, 0.870, 0.170),
)
NHANES_MEN = ((25, 1.065, 0.140), (85, 1.050, 0.160))
# Per-vertebra BMD relative to the L1-L4 mean (women: L1 0.96, L2 1.06, L3 1.10, L4 1.09).
LEVEL_FACTOR = {"T12": 0.89, "L1": 0.913, "L2": 1.008, "L3": 1.046, "L4": 1.036, "L5": 1.02}


@dataclass(frozen=True)
class AnatomyRanges:
    """Population ranges the sampler draws from (defaults; see docs/physics.md)."""

    female_fraction: float = 0.85
    age_mean_years: float = 62.0
    age_sd_years: float = 12.0
    bmi_mean: float = 26.5
    bmi_sd: float = 5.0
    body_height_mm: tuple[float, ...] = (25.0, 27.0, 28.0, 28.5, 29.0, 29.0)
    body_width_mm: tuple[float, ...] = (37.0, 40.0, 43.0, 46.5, 50.0, 52.0)
    disc_height_mm: tuple[float, ...] = (7.0, 8.5, 9.5, 10.5, 11.5)
    tp_length_mm: tuple[float, ...] = (0.0, 12.0, 18.0, 24.0, 19.0, 14.0)
    body_depth_mm: tuple[float, ...] = (28.0, 30.0, 32.0, 33.0, 34.0, 34.0)
    body_waist: tuple[float, float] = (0.04, 0.16)
    """The body's visible lateral waist, 1 - (its width at mid-height) / (its
    widest row, at the endplates' rims), drawn per vertebra. Before 0.7 a
    3-9 % narrowing of the middle was drawn, which the rounded corners all
    but hid (0-3 % visible); the two labelled CTs projected here show 5-13 %
    and 7-17 % at L1-L4 (docs/ct.md). `body_width_mm` is the width at
    mid-height."""
    cortex_mm: tuple[float, float] = (0.25, 0.5)
    """Thickness of the body's cortical shell, per vertebra: about 0.35 mm
    (0.09-0.86 mm locally) measured directly on L1 shells, which clinical CT
    shows at least twice as thick (Silva et al. 1994; docs/physics.md)."""
    texture_hurst_range: tuple[float, float] = (0.20, 0.60)
    bmd_sd_factor: float = 1.0
    """Scales the NHANES SD of the patient's L1-L4 BMD around its age-and-sex mean.
    1 draws the general population; above 1 widens it toward the tails a DXA
    clinic sees more of (severe osteoporosis; dense, degenerate spines), still
    within 0.45-1.6 g/cm2. A training-cohort option: test cohorts keep 1."""
    lordosis_deg: tuple[float, float] = (5.0, 30.0)
    """Residual lumbar lordosis (L1 to L5 endplate angle) on the table; see
    `lordosis_position`. Legs on the positioning block flatten it; a patient
    who cannot bend the knees keeps more (docs/physics.md)."""
    lordosis_position: tuple[float, ...] = (-0.6, -0.4, -0.2, 0.0, 0.2, 0.4)
    """Each level's place along the curve (apex at L3): its endplates lean by
    lordosis x position against the beam."""
    disc_narrowing_fraction: tuple[float, float] = (0.1, 0.6)
    """A degenerated disc keeps this fraction of its height (0.7-6.9 mm)."""
    disc_narrowing_level_weights: tuple[float, ...] = (0.10, 0.15, 0.20, 0.25, 0.30)
    """Which discs narrow (T12/L1 .. L4/L5): more often the lower ones."""
    posterior_fraction: tuple[float, float] = (0.49, 0.04)
    """Mean and SD of the share of a vertebra's mineral in its posterior
    elements, one draw per patient, clipped to mean +- 2.5 SD: 47 % in
    cadaver vertebrae aged 61-88 and 51.4 (4.2) % by QCT in 574 young
    subjects (docs/physics.md)."""
    pedicle_width_mm: tuple[float, ...] = (7.8, 8.7, 8.9, 10.3, 12.9, 14.0)
    """Transverse width of each pedicle (T12..L5) for a body of the default
    size: 8.7 mm at L1 to 12.9 mm at L4 measured on 2905 pedicles (Zindrick et
    al., Spine 1987); L5's 18 mm isthmus merges with the body and is drawn
    narrower, inside it (docs/physics.md)."""
    pedicle_height_mm: tuple[float, ...] = (15.9, 15.4, 15.0, 14.9, 14.8, 14.0)
    """Sagittal height of each pedicle (T12..L5): about 15 mm at every lumbar
    level, half the body's height (Zindrick et al. 1987)."""
    interpedicular_mm: tuple[float, ...] = (20.0, 21.0, 21.5, 22.0, 23.0, 24.0)
    """Distance between the inner walls of the two pedicles (T12..L5), about
    21 mm at L1 to 23 mm at L4 (radiographs read about 10 % more through
    magnification; docs/physics.md)."""
    pedicle_convergence_deg: tuple[float, ...] = (5.0, 10.9, 12.0, 14.4, 17.7, 29.8)
    """Medial convergence of each pedicle's axis against the posterior-anterior
    beam (T12..L5; Zindrick et al. 1987, T12 taken as 5): seen end-on, the
    pedicle's ring smears sideways by its length x tan(angle)."""
    pedicle_length_mm: float = 15.0
    """Length of the pedicle between the body and the lamina, for a body of
    the default size; with the convergence it sets the sideways smear."""
    paraspinal_fat_deficit: tuple[float, float] = (0.13, 0.26)
    """Mean and SD of the relative drop of the soft tissue's fat fraction over
    the spine against beside it (lean erector spinae, psoas, crura and marrow
    over the spine; retroperitoneal and perirenal fat beside it, more of it
    the fatter the patient), one draw per patient, clipped to mean +- 2.5 SD.
    It is the fat-distribution error of DXA BMD, which no soft-tissue
    baseline removes (docs/physics.md): at 20 g/cm2 of soft tissue and fat
    fraction 0.3 the mean adds about +0.03 g/cm2 and the SD gives the 0.06
    g/cm2 between-patient SD reported from CT-measured fat distributions."""


PARASPINAL_FAT_STREAM = 7
"""The paraspinal fat deficit is drawn from default_rng([texture_seed, 7]), so
that adding it left every earlier draw of a case as it was."""


@dataclass(frozen=True)
class ArtefactRates:
    """Per-scan probabilities of each artefact (age-dependent ones at age 65)."""

    scoliosis: float = 0.12
    axial_rotation: float = 0.15
    tilt: float = 0.15
    osteophytes: float = 0.35
    endplate_sclerosis: float = 0.20
    compression_fracture: float = 0.10
    aortic_calcification: float = 0.30
    clips: float = 0.05
    implant: float = 0.01
    off_centre: float = 0.10
    bowel_gas_over_spine: float = 0.30
    disc_narrowing: float = 0.35
    """Degenerative disc-space narrowing of one or two discs."""


@dataclass(frozen=True)
class Vertebra:
    """One vertebra's shape and bone as drawn for this patient (mm, g/cm2)."""

    name: str
    half_height_mm: float
    half_width_mm: float
    depth_mm: float
    cortex_mm: float
    waist: float
    """Visible lateral waist: 1 - mid-height width / widest row (spine.outline_half_width)."""
    tp_length_mm: float
    bmd_target_g_cm2: float
    texture_hurst: float
    height_loss: float = 0.0
    concavity: float = 0.03
    osteophytes: tuple[tuple[int, int, float], ...] = ()
    """(side -1 right/+1 left, end -1 upper/+1 lower, length mm) spurs."""
    sclerosis: float = 0.0
    sagittal_tilt_deg: float = 0.0
    """Endplate angle against the beam from lordosis: the body's front and back
    project at different heights, so its endplates and the disc space blur."""
    posterior_fraction: float | None = None
    """Share of the vertebra's mineral in its posterior elements; None keeps
    the drawn shapes' own share (about 0.2)."""
    pedicle_half_width_mm: float | None = None
    """Half the pedicle's transverse width; the pedicle fields None keep the
    pre-0.6 pedicles (0.34 x the body's half width wide, 0.54 x its half
    height tall, centred at 0.6 x its half width)."""
    pedicle_half_height_mm: float | None = None
    pedicle_centre_mm: float | None = None
    """Lateral distance of each pedicle's centre from the body's midline."""
    pedicle_smear_mm: float = 0.0
    """Sideways shift of the pedicle's ring between its two ends, seen end-on
    (length x tan(convergence))."""

    @property
    def label(self) -> int:
        return LABEL_OF[self.name]


@dataclass(frozen=True)
class Spine:
    """Placement of the spine in the field of view."""

    top_mm: float
    centre_x_mm: float
    tilt_deg: float
    scoliosis_deg: float
    scoliosis_wavelength_mm: float
    scoliosis_phase: float
    axial_rotation_deg: float
    disc_heights_mm: tuple[float, ...]


@dataclass(frozen=True)
class SoftTissue:
    """Abdomen: total soft-tissue areal density at the spine and its make-up."""

    centre_g_cm2: float
    half_width_cm: float
    vertical_gradient: float
    fat_fraction: float
    psoas_cm: float
    gas_pockets: tuple[tuple[float, float, float, float, float], ...]
    """(y mm, x mm, radius mm, elongation, gas depth cm) per pocket."""
    paraspinal_fat_deficit: float = 0.0
    """Over the spine the fat fraction is (1 - this) times what it is beside it."""


@dataclass(frozen=True)
class Artefacts:
    """Non-vertebral structures and foreign objects."""

    rib_drop_mm: tuple[float, float]
    rib_length_mm: tuple[float, float]
    iliac_crest_offset_mm: float
    iliac_peak_lateral_mm: float
    calcification: tuple[tuple[float, float, float, float], ...] = ()
    """(fraction along aorta, wall -1/+1, length mm, g/cm2) plaques."""
    clips: tuple[tuple[float, float, float], ...] = ()
    """(y mm, x mm, angle rad) titanium clips."""
    implant_levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """Everything random about one simulated scan."""

    scan_id: str
    patient_id: str
    age_years: float
    sex: str
    bmi_kg_m2: float
    vertebrae: tuple[Vertebra, ...]
    spine: Spine
    soft: SoftTissue
    artefacts: Artefacts
    flags: dict[str, bool] = field(default_factory=dict)
    texture_seed: int = 0


def nhanes_bmd(age_years: float, sex: str) -> tuple[float, float]:
    """Population mean and SD of L1-L4 BMD (g/cm2) at this age and sex."""
    table = np.array(NHANES_WOMEN if sex == "F" else NHANES_MEN)
    mean = float(np.interp(age_years, table[:, 0], table[:, 1]))
    sd = float(np.interp(age_years, table[:, 0], table[:, 2]))
    return mean, sd


def _age_rate(base: float, age_years: float) -> float:
    """Scale a rate given at age 65 for age: degenerative changes rise with age."""
    return float(np.clip(base * np.exp(0.045 * (age_years - 65.0)), 0.0, 1.0))


def sample_case(
    rng: np.random.Generator,
    scan_id: str,
    ranges: AnatomyRanges | None = None,
    rates: ArtefactRates | None = None,
) -> Case:
    """Draw one patient and scan from the population ranges and artefact rates."""
    ranges = ranges or AnatomyRanges()
    rates = rates or ArtefactRates()
    sex = "F" if rng.random() < ranges.female_fraction else "M"
    age = float(np.clip(rng.normal(ranges.age_mean_years, ranges.age_sd_years), 20, 95))
    bmi = float(np.clip(rng.normal(ranges.bmi_mean, ranges.bmi_sd), 16, 50))
    flags = {
        "scoliosis": rng.random() < rates.scoliosis,
        "axial_rotation": rng.random() < rates.axial_rotation,
        "tilt": rng.random() < rates.tilt,
        "osteophytes": rng.random() < _age_rate(rates.osteophytes, age),
        "endplate_sclerosis": rng.random() < _age_rate(rates.endplate_sclerosis, age),
        "compression_fracture": rng.random() < _age_rate(rates.compression_fracture, age),
        "aortic_calcification": rng.random() < _age_rate(rates.aortic_calcification, age),
        "clips": rng.random() < rates.clips,
        "implant": rng.random() < rates.implant,
        "off_centre": rng.random() < rates.off_centre,
        "bowel_gas_over_spine": rng.random() < rates.bowel_gas_over_spine,
    }
    vertebrae = _sample_vertebrae(rng, ranges, flags, age, sex, bmi)
    size = vertebrae[0].half_width_mm / (ranges.body_width_mm[0] / 2)
    discs = tuple(float(d * size * rng.uniform(0.85, 1.15)) for d in ranges.disc_height_mm)
    spine = Spine(
        top_mm=float(rng.uniform(-4.0, 6.0)),
        centre_x_mm=float(
            rng.choice([-1, 1]) * rng.uniform(12, 25) if flags["off_centre"] else rng.normal(0, 4)
        ),
        tilt_deg=float(
            rng.choice([-1, 1]) * rng.uniform(4, 9) if flags["tilt"] else rng.normal(0, 1.5)
        ),
        scoliosis_deg=float(
            rng.choice([-1, 1]) * rng.uniform(6, 16) if flags["scoliosis"] else 0.0
        ),
        scoliosis_wavelength_mm=float(rng.uniform(260, 420)),
        scoliosis_phase=float(rng.uniform(0, 2 * np.pi)),
        axial_rotation_deg=float(
            rng.choice([-1, 1]) * rng.uniform(6, 15)
            if flags["axial_rotation"]
            else rng.normal(0, 2)
        ),
        disc_heights_mm=discs,
    )
    soft = _sample_soft_tissue(rng, bmi, sex, spine, flags["bowel_gas_over_spine"])
    artefacts = _sample_artefacts(rng, flags, spine)
    texture_seed = int(rng.integers(2**31))
    # Drawn last so that every earlier draw (and so the rest of the case)
    # stays what it was before lordosis was modelled.
    lordosis = rng.uniform(*ranges.lordosis_deg)
    vertebrae = tuple(
        replace(v, sagittal_tilt_deg=float(lordosis * position + rng.normal(0, 2.0)))
        for v, position in zip(vertebrae, ranges.lordosis_position, strict=True)
    )
    # The posterior-element share (0.4) comes after lordosis and before disc
    # narrowing, so that narrowing on or off leaves it the same.
    mean, sd = ranges.posterior_fraction
    posterior = float(np.clip(rng.normal(mean, sd), mean - 2.5 * sd, mean + 2.5 * sd))
    vertebrae = tuple(replace(v, posterior_fraction=posterior) for v in vertebrae)
    # Drawn last: with or without narrowing, the rest of the case is the same.
    flags["disc_narrowing"] = rng.random() < _age_rate(rates.disc_narrowing, age)
    if flags["disc_narrowing"]:
        spine = replace(spine, disc_heights_mm=_narrowed_discs(rng, ranges, discs))
    mean, sd = ranges.paraspinal_fat_deficit
    deficit = np.random.default_rng([texture_seed, PARASPINAL_FAT_STREAM]).normal(mean, sd)
    soft = replace(
        soft, paraspinal_fat_deficit=float(np.clip(deficit, mean - 2.5 * sd, mean + 2.5 * sd))
    )
    return Case(
        scan_id=scan_id,
        patient_id=f"P{scan_id}",
        age_years=round(age, 1),
        sex=sex,
        bmi_kg_m2=round(bmi, 1),
        vertebrae=vertebrae,
        spine=spine,
        soft=soft,
        artefacts=artefacts,
        flags=flags,
        texture_seed=texture_seed,
    )


def _narrowed_discs(
    rng: np.random.Generator, ranges: AnatomyRanges, discs: tuple[float, ...]
) -> tuple[float, ...]:
    """One disc (or, 40 %, two) narrowed to `disc_narrowing_fraction` of its height."""
    weights = np.array(ranges.disc_narrowing_level_weights)
    count = 1 + int(rng.random() < 0.4)
    levels = rng.choice(len(discs), size=count, replace=False, p=weights / weights.sum())
    narrowed = list(discs)
    for level in levels:
        narrowed[level] *= float(rng.uniform(*ranges.disc_narrowing_fraction))
    return tuple(narrowed)


def _sample_vertebrae(
    rng: np.random.Generator,
    ranges: AnatomyRanges,
    flags: dict[str, bool],
    age: float,
    sex: str,
    bmi: float,
) -> tuple[Vertebra, ...]:
    mean, sd = nhanes_bmd(age, sex)
    z_bmd = rng.normal()
    patient_bmd = mean + sd * ranges.bmd_sd_factor * z_bmd + 0.004 * (bmi - 26.5)
    patient_bmd = float(np.clip(patient_bmd, 0.45, 1.6))
    # Texture quality: weakly tied to BMD (r ~ 0.4) and falling with age.
    quality = 0.4 * z_bmd + np.sqrt(1 - 0.4**2) * rng.normal() - 0.015 * (age - 60)
    h_low, h_high = ranges.texture_hurst_range
    patient_hurst = h_low + (h_high - h_low) / (1 + np.exp(-1.2 * quality))
    size = rng.normal(1.0 if sex == "F" else 1.08, 0.05)
    fractured = rng.integers(1, 5) if flags["compression_fracture"] else -1
    vertebrae = []
    for i, name in enumerate(VERTEBRA_NAMES):
        osteophytes: tuple[tuple[int, int, float], ...] = ()
        if flags["osteophytes"] and i >= 1 and rng.random() < 0.2 + 0.12 * i:
            n_spurs = int(rng.integers(1, 4))
            osteophytes = tuple(
                (int(rng.choice([-1, 1])), int(rng.choice([-1, 1])), float(rng.uniform(2.5, 8)))
                for _ in range(n_spurs)
            )
        if flags["osteophytes"] and i == 3 and not osteophytes:
            osteophytes = ((int(rng.choice([-1, 1])), 1, float(rng.uniform(3, 8))),)
        is_fracture = i == fractured
        vertebrae.append(
            Vertebra(
                name=name,
                half_height_mm=float(ranges.body_height_mm[i] * size * rng.uniform(0.95, 1.05) / 2),
                half_width_mm=float(ranges.body_width_mm[i] * size * rng.uniform(0.95, 1.05) / 2),
                depth_mm=float(ranges.body_depth_mm[i] * size * rng.uniform(0.93, 1.07)),
                cortex_mm=float(rng.uniform(*ranges.cortex_mm)),
                waist=float(rng.uniform(*ranges.body_waist)),
                tp_length_mm=float(ranges.tp_length_mm[i] * size * rng.uniform(0.8, 1.2)),
                bmd_target_g_cm2=float(
                    patient_bmd
                    * LEVEL_FACTOR[name]
                    * rng.normal(1.0, 0.03)
                    * (1.12 if is_fracture else 1.0)
                ),
                texture_hurst=float(np.clip(patient_hurst + rng.normal(0, 0.02), 0.1, 0.9)),
                height_loss=float(rng.uniform(0.2, 0.4)) if is_fracture else 0.0,
                concavity=float(rng.uniform(0.12, 0.25))
                if is_fracture
                else float(rng.uniform(0.01, 0.05)),
                osteophytes=osteophytes,
                sclerosis=float(rng.uniform(0.5, 1.2))
                if flags["endplate_sclerosis"] and i >= 2 and rng.random() < 0.6
                else 0.0,
            )
        )
    # Pedicles scale with their own body and draw nothing: every other draw
    # of the case is what it was before they were sized (0.6).
    vertebrae = [_with_pedicles(v, ranges, i) for i, v in enumerate(vertebrae)]
    if flags["endplate_sclerosis"] and not any(v.sclerosis for v in vertebrae):
        i = int(rng.integers(2, 5))
        vertebrae[i] = replace(vertebrae[i], sclerosis=float(rng.uniform(0.5, 1.2)))
    return tuple(vertebrae)


def _with_pedicles(vertebra: Vertebra, ranges: AnatomyRanges, level: int) -> Vertebra:
    """The vertebra with its level's pedicles, scaled by how much wider and
    taller its body is than the default one of its level."""
    width_scale = vertebra.half_width_mm / (ranges.body_width_mm[level] / 2)
    height = ranges.pedicle_height_mm[level] / 2 * vertebra.half_height_mm
    width = ranges.pedicle_width_mm[level]
    return replace(
        vertebra,
        pedicle_half_width_mm=width / 2 * width_scale,
        pedicle_half_height_mm=height / (ranges.body_height_mm[level] / 2),
        pedicle_centre_mm=(ranges.interpedicular_mm[level] + width) / 2 * width_scale,
        pedicle_smear_mm=ranges.pedicle_length_mm
        * width_scale
        * float(np.tan(np.deg2rad(ranges.pedicle_convergence_deg[level]))),
    )


def _sample_soft_tissue(
    rng: np.random.Generator, bmi: float, sex: str, spine: Spine, gas_over_spine: bool
) -> SoftTissue:
    centre = float(np.clip((6.0 + 0.55 * bmi) * rng.normal(1.0, 0.06), 10.0, 38.0))
    fat = float(
        np.clip(
            0.12 + 0.016 * (bmi - 18) + (0.06 if sex == "F" else 0.0) + rng.normal(0, 0.04),
            0.06,
            0.65,
        )
    )
    pockets = []
    for _ in range(int(rng.integers(2, 9))):
        side = rng.choice([-1, 1])
        pockets.append(
            (
                float(rng.uniform(20, 200)),
                float(side * rng.uniform(35, 80)),
                float(rng.uniform(5, 18)),
                float(rng.uniform(1.0, 2.2)),
                float(rng.uniform(0.8, 3.5)),
            )
        )
    if gas_over_spine:
        pockets.append(
            (
                float(rng.uniform(40, 180)),
                float(spine.centre_x_mm + rng.normal(0, 8)),
                float(rng.uniform(6, 15)),
                float(rng.uniform(1.0, 2.0)),
                float(rng.uniform(1.0, 3.0)),
            )
        )
    return SoftTissue(
        centre_g_cm2=centre,
        half_width_cm=float(0.8 * centre + rng.uniform(0.5, 3.0)),
        vertical_gradient=float(rng.normal(0.02, 0.03)),
        fat_fraction=fat,
        psoas_cm=float(rng.uniform(2.5, 5.0) * (1.1 if sex == "M" else 1.0)),
        gas_pockets=tuple(pockets),
    )


def _sample_artefacts(rng: np.random.Generator, flags: dict[str, bool], spine: Spine) -> Artefacts:
    calcification: tuple[tuple[float, float, float, float], ...] = ()
    if flags["aortic_calcification"]:
        calcification = tuple(
            (
                float(rng.uniform(0.1, 1.0)),
                int(rng.choice([-1, 1])),
                float(rng.uniform(3, 16)),
                float(rng.uniform(0.08, 0.45)),
            )
            for _ in range(int(rng.integers(2, 16)))
        )
    clips: tuple[tuple[float, float, float], ...] = ()
    if flags["clips"]:
        y0, x0 = rng.uniform(15, 90), spine.centre_x_mm - rng.uniform(35, 70)
        clips = tuple(
            (
                float(y0 + rng.normal(0, 6)),
                float(x0 + rng.normal(0, 6)),
                float(rng.uniform(0, np.pi)),
            )
            for _ in range(int(rng.integers(1, 6)))
        )
    implant: tuple[str, ...] = ()
    if flags["implant"]:
        top = int(rng.integers(2, 5))
        implant = tuple(("L1", "L2", "L3", "L4", "L5")[top - 1 : top + 1])
    return Artefacts(
        rib_drop_mm=(float(rng.uniform(0.25, 0.6)), float(rng.uniform(0.25, 0.6))),
        rib_length_mm=(float(rng.uniform(60, 140)), float(rng.uniform(60, 140))),
        iliac_crest_offset_mm=float(rng.normal(0, 8)),
        iliac_peak_lateral_mm=float(rng.uniform(55, 80)),
        calcification=calcification,
        clips=clips,
        implant_levels=implant,
    )

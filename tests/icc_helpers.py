"""Hand-built ICC colour profiles for tests and benchmarks (no profile files are installed on this machine).

:func:`rgb_profile` writes an ICC v2 display profile of the matrix / tone-curve kind that cameras and phones embed
(Adobe RGB (1998), Display P3): a header, a description, the white point, the three colorants adapted to the D50
connection space (Bradford) and one tone curve per channel. :data:`PRIMARIES` holds the published chromaticities.
:func:`rgb_to_srgb` is the independent hand computation of what a colour-managed viewer shows for such a
profile's pixels (both spaces share the D65 white, so no adaptation enters). :func:`cmyk_profile` writes a print
profile of a simple affine ink model, whose colours :func:`cmyk_to_linear_srgb` computes by hand.
"""

import struct

import numpy as np

D65 = (0.3127, 0.3290)
D50_XYZ = (0.9642, 1.0, 0.8249)
#: chromaticities (x, y) of the red, green and blue primaries, and each space's tone curve
PRIMARIES = {
    "sRGB": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)),
    "Adobe RGB (1998)": ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)),
    "Display P3": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)),
}
#: the tone curve of each space: a pure power (Adobe RGB: 563/256, as its specification stores it) or "srgb"
CURVES = {"sRGB": "srgb", "Adobe RGB (1998)": 563 / 256, "Display P3": "srgb"}
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def _xyz(xy):
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz_matrix(space):
    """The 3x3 matrix from linear RGB of ``space`` to CIE XYZ under its own (D65) white."""
    cols = np.stack([_xyz(p) for p in PRIMARIES[space]], axis=1)
    scale = np.linalg.solve(cols, _xyz(D65))
    return cols * scale


def rgb_to_d50_matrix(space):
    """The 3x3 matrix from linear RGB of ``space`` to XYZ adapted to the D50 connection space (Bradford), whose
    columns are the profile's colorants."""
    adapt = np.linalg.inv(_BRADFORD) @ np.diag((_BRADFORD @ np.array(D50_XYZ)) / (_BRADFORD @ _xyz(D65))) @ _BRADFORD
    return adapt @ rgb_to_xyz_matrix(space)


def decode(values, curve):
    """Encoded values in 0..1 to linear light under ``curve`` (a power, or ``"srgb"``)."""
    v = np.asarray(values, np.float64)
    if curve == "srgb":
        return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return v ** curve


def encode_srgb(linear):
    """Linear light in 0..1 to sRGB-encoded values in 0..1 (clipped to the gamut first)."""
    v = np.clip(np.asarray(linear, np.float64), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def rgb_to_srgb(pixels, space):
    """8-bit pixels of ``space`` as the 8-bit sRGB pixels a colour-managed viewer shows (hand formula)."""
    lin = decode(np.asarray(pixels, np.float64) / 255.0, CURVES[space])
    xyz = lin @ rgb_to_xyz_matrix(space).T
    srgb_lin = xyz @ np.linalg.inv(rgb_to_xyz_matrix("sRGB")).T
    return np.round(encode_srgb(srgb_lin) * 255.0).astype(np.int64)


def srgb_to_rgb(pixels, space):
    """8-bit sRGB pixels re-encoded in ``space`` (the inverse of :func:`rgb_to_srgb`, rounded to 8 bits)."""
    lin = decode(np.asarray(pixels, np.float64) / 255.0, "srgb")
    xyz = lin @ rgb_to_xyz_matrix("sRGB").T
    own = np.clip(xyz @ np.linalg.inv(rgb_to_xyz_matrix(space)).T, 0.0, 1.0)
    curve = CURVES[space]
    enc = encode_srgb(own) if curve == "srgb" else own ** (1 / curve)
    return np.round(enc * 255.0).astype(np.uint8)


def _s15(v):
    return struct.pack(">i", int(round(v * 65536)))


def _xyz_tag(xyz):
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(c) for c in xyz)


def _curve_tag(curve):
    if curve == "srgb":  # a 1024-entry table of the sRGB decoding curve
        table = np.round(decode(np.linspace(0, 1, 1024), "srgb") * 65535).astype(">u2")
        return b"curv" + b"\0" * 4 + struct.pack(">I", len(table)) + table.tobytes()
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(round(curve * 256))) + b"\0\0"


def _desc_tag(text):
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)


def rgb_profile(space, description=None):
    """The bytes of an ICC v2 RGB display profile for ``space`` (a key of :data:`PRIMARIES`)."""
    colorants = rgb_to_d50_matrix(space)
    curve = _curve_tag(CURVES[space])
    tags = [(b"desc", _desc_tag(description or space)), (b"cprt", b"text" + b"\0" * 4 + b"test profile\0"),
            (b"wtpt", _xyz_tag(D50_XYZ)), (b"rXYZ", _xyz_tag(colorants[:, 0])), (b"gXYZ", _xyz_tag(colorants[:, 1])),
            (b"bXYZ", _xyz_tag(colorants[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    return _assemble(b"mntrRGB XYZ ", tags)


def _assemble(kind, tags):
    """A whole ICC v2 profile: the header (``kind``: device class, colour space, connection space), the tag table
    and the tags' data, each padded to 4 bytes."""
    offset = 128 + 4 + 12 * len(tags)
    table, data = [], b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table.append(sig + struct.pack(">II", offset + len(data), len(body)))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + kind
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(_s15(c) for c in D50_XYZ) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


#: the linear-light sRGB colour of blank paper and what 100% of each ink (C, M, Y, K) takes away from it, for
#: :func:`cmyk_profile`: an affine ink model, so the profile's 2-point table holds it exactly
PAPER = np.array([0.90, 0.88, 0.80])
INKS = np.array([[0.45, 0.05, 0.0], [0.02, 0.43, 0.05], [0.0, 0.02, 0.35], [0.43, 0.38, 0.40]])


def cmyk_to_linear_srgb(cmyk):
    """Linear-light sRGB of 8-bit CMYK ink amounts under the :data:`PAPER` / :data:`INKS` model (hand formula)."""
    return PAPER - (np.asarray(cmyk, np.float64) / 255.0) @ INKS


def cmyk_profile(description="Test press CMYK", grid=2):
    """The bytes of an ICC v2 CMYK output profile of the affine ink model (:func:`cmyk_to_linear_srgb`).

    One lut16 table (A2B0) from CMYK to the D50 XYZ connection space with ``grid`` points per ink (2: the corners
    hold the affine model exactly; a real press profile has 9-33); its nodes are the model's colours, converted
    with the D50-adapted sRGB colorants, as 16-bit XYZ (1.0 = 32768)."""
    to_xyz = rgb_to_d50_matrix("sRGB")
    steps = np.linspace(0, 255, grid)
    nodes = np.stack(np.meshgrid(steps, steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 4)  # C slowest
    xyz = cmyk_to_linear_srgb(nodes) @ to_xyz.T
    clut = np.round(np.clip(xyz, 0, 1.99) * 32768).astype(">u2")
    ramp = np.array([0, 65535], ">u2")
    lut = (b"mft2" + b"\0" * 4 + struct.pack(">BBBB", 4, 3, grid, 0)
           + b"".join(_s15(v) for v in np.eye(3).ravel()) + struct.pack(">HH", 2, 2)
           + ramp.tobytes() * 4 + clut.tobytes() + ramp.tobytes() * 3)
    tags = [(b"desc", _desc_tag(description)), (b"cprt", b"text" + b"\0" * 4 + b"test profile\0"),
            (b"wtpt", _xyz_tag(D50_XYZ)), (b"A2B0", lut)]
    return _assemble(b"prtrCMYKXYZ ", tags)


def srgb_to_cmyk(pixels):
    """8-bit sRGB pixels as 8-bit ink amounts of :func:`cmyk_profile`'s model: half of the grey component as black
    ink, the rest from C, M and Y (solved exactly, then clipped: colours brighter than the paper print as paper)."""
    target = decode(np.asarray(pixels, np.float64) / 255.0, "srgb")
    taken = np.clip(PAPER - target, 0.0, None)
    k = np.clip(0.5 * np.min(taken / INKS[3], axis=-1), 0.0, 1.0)
    cmy = np.linalg.solve(INKS[:3].T, (taken - k[..., None] * INKS[3]).T).T
    inks = np.concatenate([np.clip(cmy, 0.0, 1.0), k[..., None]], axis=-1)
    return np.round(inks * 255.0).astype(np.uint8)

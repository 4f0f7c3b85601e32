"""ptychodus files: ``diffraction.h5`` plus a product file (HDF5 ``product.h5`` or NPZ).

diffraction.h5: ``indexes`` (P,) int, ``patterns`` (P, H, W) counts with attributes
``detector_pixel_width_m`` / ``detector_pixel_height_m``, ``bad_pixels`` (H, W) bool, True = bad.
Product (HDF5 attributes / NPZ keys): ``photon_energy_eV``, ``detector_object_distance_m``;
``probe_position_indexes``, ``probe_position_x_m``, ``probe_position_y_m`` (metres); ``probe``
[C, I, H, W] complex (coherent OPR x incoherent modes; [0, 0] is used) with pixel sizes;
``object`` [L, H, W] or [H, W] with ``center_x_m``, ``center_y_m``, pixel sizes (NPZ:
``object_center_x_m`` ...). Metres -> object pixels follows ptychodus (see geometry.py):
``x_px = (x_m - center_x_m) / pixel_width_m + (W - 1) / 2``. Patterns are matched to positions by
index; duplicate or unmatched indexes are refused.

ptychotrace writes a group ``ptychotrace`` in product.h5 (split, metadata, the object's role) that
ptychodus ignores, and marks a physical probe by ``probe_photon_count = sum |P|^2``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset, DatasetError
from .geometry import Geometry
from .hdf5 import atomic_h5, h5py_module, open_hdf5, positive_attr
from .scan import LoadOptions, RawScan

DIFFRACTION_NAME, PRODUCT_NAME = "diffraction.h5", "product.h5"
EXTRAS = "ptychotrace"


def looks_like_diffraction(f) -> bool:
    return "patterns" in f and "indexes" in f


def _unique_indexes(idx: np.ndarray, key: str, path: Path) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise DatasetError(f"{path}: '{key}' must be a 1-D integer array, got {idx.dtype} {idx.shape}")
    uniq, n = np.unique(idx, return_counts=True)
    if (n > 1).any():
        raise DatasetError(f"{path}: '{key}' has duplicate indexes, first {int(uniq[n > 1][0])} "
                           f"({int((n > 1).sum())} duplicated)")
    return idx.astype(np.int64)


def _product_path(diffraction: Path, opts: LoadOptions) -> Path:
    if opts.product is not None:
        p = Path(opts.product)
    else:
        p = diffraction.with_name(PRODUCT_NAME)
        if not p.exists() and diffraction.with_name("product.npz").exists():
            p = diffraction.with_name("product.npz")
    if not p.is_file():
        raise DatasetError(f"{diffraction}: ptychodus patterns need a product file for positions, "
                           f"probe and geometry; none at {p} (give it with --product FILE)")
    return p


def _read_product(path: Path) -> dict:
    """The product's fields as plain arrays/numbers (HDF5 or NPZ)."""
    if zipfile.is_zipfile(path):
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}

        def num(key):
            if key not in a:
                raise DatasetError(f"{path}: product is missing '{key}'")
            return float(np.asarray(a[key]).reshape(()))

        return {"energy": num("photon_energy_eV"), "distance": num("detector_object_distance_m"),
                "indexes": a.get("probe_position_indexes"), "x": a.get("probe_position_x_m"),
                "y": a.get("probe_position_y_m"), "probe": a.get("probe"),
                "object": a.get("object"), "center_x": num("object_center_x_m"),
                "center_y": num("object_center_y_m"), "obj_pw": num("object_pixel_width_m"),
                "obj_ph": num("object_pixel_height_m"),
                "probe_photon_count": float(np.asarray(a.get("probe_photon_count", 0.0))),
                "extras": None, "keys": "NPZ keys"}
    h5py = h5py_module()
    with h5py.File(path, "r") as f:
        for key in ("probe_position_indexes", "probe_position_x_m", "probe_position_y_m",
                    "probe", "object"):
            if key not in f:
                raise DatasetError(f"{path}: product is missing '{key}'")
        obj = f["object"]
        out = {"energy": positive_attr(f, "photon_energy_eV", "the product file", path),
               "distance": positive_attr(f, "detector_object_distance_m", "the product file", path),
               "indexes": f["probe_position_indexes"][()], "x": f["probe_position_x_m"][()],
               "y": f["probe_position_y_m"][()], "probe": f["probe"][()], "object": obj[()],
               "center_x": float(obj.attrs.get("center_x_m", 0.0)),
               "center_y": float(obj.attrs.get("center_y_m", 0.0)),
               "obj_pw": positive_attr(obj, "pixel_width_m", "'object'", path),
               "obj_ph": positive_attr(obj, "pixel_height_m", "'object'", path),
               "probe_photon_count": float(f.attrs.get("probe_photon_count", 0.0)),
               "object_role": str(obj.attrs.get("ptychotrace_role", "reconstruction")),
               "extras": None, "keys": "HDF5 attributes"}
        if EXTRAS in f:
            g = f[EXTRAS]
            out["extras"] = {"split": g["split"][()] if "split" in g else None,
                             "metadata": json.loads(str(g.attrs.get("metadata", "{}")))}
    return out


def read_raw(path: Path, opts: LoadOptions) -> RawScan:
    with open_hdf5(path) as f:
        for key in ("indexes", "patterns"):
            if key not in f:
                raise DatasetError(f"{path}: ptychodus diffraction file is missing '{key}'")
        idx = _unique_indexes(f["indexes"][()], "indexes", path)
        pat = f["patterns"]
        counts = pat[()]
        pw = positive_attr(pat, "detector_pixel_width_m", "'patterns'", path, required=False)
        ph = positive_attr(pat, "detector_pixel_height_m", "'patterns'", path, required=False)
        bad = None
        if "bad_pixels" in f:
            bad = np.asarray(f["bad_pixels"][()]) != 0
    if counts.ndim != 3 or counts.shape[0] != len(idx):
        raise DatasetError(f"{path}: 'patterns' must be (P, H, W) with P = len(indexes) = "
                           f"{len(idx)}, got {counts.shape}")
    prod_path = _product_path(path, opts)
    prod = _read_product(prod_path)
    pidx = _unique_indexes(prod["indexes"], "probe_position_indexes", prod_path)
    where = {int(v): i for i, v in enumerate(pidx)}
    lost = [int(v) for v in idx if int(v) not in where]
    if lost:
        raise DatasetError(f"{path}: {len(lost)} pattern indexes have no position in {prod_path} "
                           f"(first {lost[0]})")
    order = np.array([where[int(v)] for v in idx])
    x = np.asarray(prod["x"], np.float64)
    y = np.asarray(prod["y"], np.float64)
    if x.shape != pidx.shape or y.shape != pidx.shape:
        raise DatasetError(f"{prod_path}: probe_position_x_m/y_m must match probe_position_indexes "
                           f"({len(pidx)}), got {x.shape}, {y.shape}")
    probe = np.asarray(prod["probe"])
    ppc = prod["probe_photon_count"]
    physical = bool(ppc > 0 and np.isclose(float(np.sum(np.abs(probe.reshape(-1, *probe.shape[-2:])[0]
                                                                 .astype(np.complex128)) ** 2)),
                                           ppc, rtol=1e-5))
    obj = np.asarray(prod["object"])
    obj2 = obj.reshape(-1, *obj.shape[-2:])[0] if obj.ndim >= 2 else None
    raw = RawScan(
        source_format="ptychodus", path=path, counts=counts, x_m=x[order], y_m=y[order],
        keys={"counts": "patterns", "position_x": f"{prod_path.name}:probe_position_x_m",
              "position_y": f"{prod_path.name}:probe_position_y_m", "mask": "bad_pixels",
              "probe": f"{prod_path.name}:probe", "energy": f"{prod_path.name}:photon_energy_eV",
              "distance": f"{prod_path.name}:detector_object_distance_m",
              "pixel_width": "patterns attribute detector_pixel_width_m",
              "pixel_height": "patterns attribute detector_pixel_height_m"},
        bad=bad, probe=probe, probe_physical=physical, photon_energy_eV=prod["energy"],
        detector_distance_m=prod["distance"], detector_pixel_width_m=pw, detector_pixel_height_m=ph,
        scan_index=idx, position_convention="ptychodus: x_px = (x_m - center_x_m) / pixel_width_m"
                                            " + (W - 1) / 2 (same for y)")
    raw.metadata["product_file"] = str(prod_path)
    raw.notes.append(f"product object: {list(obj.shape)} at {prod['obj_pw']:.4g} x "
                     f"{prod['obj_ph']:.4g} m pixels, centre ({prod['center_x']:.4g}, "
                     f"{prod['center_y']:.4g}) m")
    extras = prod.get("extras")
    if extras:
        if extras.get("split") is not None:
            raw.split = np.asarray(extras["split"])[order]
        raw.metadata.update({k: v for k, v in (extras.get("metadata") or {}).items()
                             if k not in ("geometry", "measurement", "source_file", "probe_units")})
    if prod.get("object_role") == "ground_truth" and obj2 is not None:
        raw.obj = obj2
    if obj2 is not None:
        raw.frame = {"shape": obj2.shape, "center_x_m": prod["center_x"],
                     "center_y_m": prod["center_y"], "from": f"{prod_path.name} object",
                     "pixel_m": (prod["obj_pw"], prod["obj_ph"])}
    return raw


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def write_diffraction(path: str | Path, ds: Dataset, geom: Geometry, force: bool = False) -> Path:
    """diffraction.h5: indexes = scan_index, patterns (float32 counts), bad_pixels (bool)."""
    path = Path(path)
    with atomic_h5(path, force) as f:
        f.create_dataset("indexes", data=ds.scan_index.astype(np.int64))
        pat = f.create_dataset("patterns", data=ds.counts.astype(np.float32))
        pat.attrs["detector_pixel_width_m"] = geom.detector_pixel_width_m
        pat.attrs["detector_pixel_height_m"] = geom.detector_pixel_height_m
        bad = np.zeros(ds.counts.shape[1:], bool) if ds.valid is None else ~ds.valid
        f.create_dataset("bad_pixels", data=bad)
    return path


def write_product(path: str | Path, obj: np.ndarray, probe: np.ndarray, xcoords: np.ndarray,
                  ycoords: np.ndarray, scan_index: np.ndarray, geom: Geometry, *,
                  name: str = "ptychotrace", comments: str = "", object_role: str = "reconstruction",
                  split: np.ndarray | None = None, metadata: dict | None = None,
                  losses: tuple[np.ndarray, np.ndarray] | None = None, force: bool = False) -> Path:
    """A ptychodus product.h5: the (H, W) object in the geometry's frame (its centre and object
    pixel size), the physical probe as [1, 1, N, N], positions (object pixels) in metres."""
    fr = geom.object_frame
    if fr is None or geom.photon_energy_eV is None or geom.detector_distance_m is None:
        raise DatasetError("writing a ptychodus product needs a complete geometry (energy, "
                           "distance, detector pixel size)")
    if tuple(obj.shape) != (fr.height_px, fr.width_px):
        raise DatasetError(f"object {obj.shape} does not match the frame "
                           f"{(fr.height_px, fr.width_px)}")
    x_m, y_m = fr.to_metres(xcoords, ycoords)
    path = Path(path)
    p = np.asarray(probe, np.complex64)
    with atomic_h5(path, force) as f:
        f.attrs["name"], f.attrs["comments"] = name, comments
        f.attrs["detector_object_distance_m"] = geom.detector_distance_m
        f.attrs["photon_energy_eV"] = geom.photon_energy_eV
        f.attrs["probe_photon_count"] = float(np.sum(np.abs(p.astype(np.complex128)) ** 2))
        for k in ("exposure_time_s", "mass_attenuation_m2_per_kg", "tomography_angle_deg",
                  "focus_object_distance_m", "tilt_angle_deg"):
            f.attrs[k] = 0.0
        f.attrs["far_field"] = True
        f.create_dataset("probe_position_indexes", data=np.asarray(scan_index, np.int64))
        f.create_dataset("probe_position_x_m", data=x_m)
        f.create_dataset("probe_position_y_m", data=y_m)
        hp = f.create_dataset("probe", data=p.reshape(1, 1, *p.shape[-2:]))
        hp.attrs["pixel_width_m"], hp.attrs["pixel_height_m"] = fr.pixel_width_m, fr.pixel_height_m
        ho = f.create_dataset("object", data=np.asarray(obj, np.complex64)[np.newaxis])
        ho.attrs["center_x_m"], ho.attrs["center_y_m"] = fr.center_x_m, fr.center_y_m
        ho.attrs["pixel_width_m"], ho.attrs["pixel_height_m"] = fr.pixel_width_m, fr.pixel_height_m
        ho.attrs["ptychotrace_role"] = object_role
        f.create_dataset("object_layer_spacing_m", data=np.zeros(0))
        ep, val = losses if losses is not None else (np.zeros(0, np.int64), np.zeros(0))
        f.create_dataset("loss_epochs", data=np.asarray(ep, np.int64))
        f.create_dataset("loss_values", data=np.asarray(val, np.float64))
        g = f.create_group(EXTRAS)
        if split is not None:
            g.create_dataset("split", data=np.asarray(split, np.int8))
        g.attrs["metadata"] = json.dumps(metadata or {}, sort_keys=True, default=str)
    return path


def write_ptychodus_dataset(directory: str | Path, ds: Dataset, geom: Geometry,
                            force: bool = False) -> tuple[Path, Path]:
    """``directory/diffraction.h5`` + ``directory/product.h5`` (object = the ground truth, marked
    as such, or ones when there is none)."""
    d = Path(directory)
    for p in (d / DIFFRACTION_NAME, d / PRODUCT_NAME):
        if p.exists() and not force:
            raise FileExistsError(f"{p} exists; pass --force to overwrite it")
    fr = geom.object_frame
    truth = ds.obj is not None
    obj = ds.obj if truth else np.ones((fr.height_px, fr.width_px), np.complex64)
    meta = {k: v for k, v in ds.metadata.items() if k not in ("geometry", "source_file")}
    prod = write_product(d / PRODUCT_NAME, obj, ds.probe, ds.xcoords, ds.ycoords, ds.scan_index,
                         geom, name="ptychotrace dataset", object_role="ground_truth" if truth
                         else "placeholder", split=ds.split, metadata=meta, force=force)
    return write_diffraction(d / DIFFRACTION_NAME, ds, geom, force=force), prod

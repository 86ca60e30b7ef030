"""Minimal valid DICOM files written with pydicom, for the decode, data-source, Space and mammography tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGLosslessSV1, SecondaryCaptureImageStorage, generate_uid

from tests.helpers.jpeg_lossless import encode_jpeg_lossless


def write_dicom(
    target: str | Path | None,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    with_pixel_data: bool = True,
    **attributes,
) -> bytes:
    """A minimal valid DICOM file (Part 10, explicit VR little endian); written to `target` if given."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = (
        pixels.shape[-3:-1] if pixels.ndim == 3 and photometric == "RGB" else pixels.shape[-2:]
    )
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for name, value in attributes.items():
        setattr(ds, name, value)
    if with_pixel_data:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    if target is not None:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(buffer.getvalue())
    return buffer.getvalue()


def write_compressed_dicom(pixels: np.ndarray, transfer_syntax: UID, **kwargs) -> bytes:
    """`write_dicom`'s file with its pixel data compressed losslessly in `transfer_syntax`.

    JPEG Lossless SV1 is encoded by tests.helpers.jpeg_lossless (pydicom has no encoder for it); anything else by
    `Dataset.compress` with pydicom's encoder plug-ins (RLE: pydicom's own; JPEG 2000: pylibjpeg-openjpeg).
    """
    ds = dcmread(io.BytesIO(write_dicom(None, pixels, **kwargs)))
    if transfer_syntax == JPEGLosslessSV1:
        ds.PixelData = encapsulate([encode_jpeg_lossless(pixels, int(ds.BitsStored))])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    else:
        ds.compress(transfer_syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
